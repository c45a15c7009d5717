"""Ctrl-C and SIGTERM as a request to stop, for the long-running commands (`live`, `pairs`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StopSignal(threading.Event):
    """Set by the first Ctrl-C or SIGTERM; `name` says which ("Ctrl-C" or "SIGTERM")."""

    name: str | None = None


@contextlib.contextmanager
def stop_on_signals(second_interrupts: bool = False) -> Iterator[StopSignal]:
    """While inside, Ctrl-C and SIGTERM (systemd, docker stop) set the yielded event instead of
    raising wherever the code happens to be (in the middle of a commit, or between publishing a
    sighting and recording it). With `second_interrupts`, a second signal raises
    KeyboardInterrupt at once: the way out when the loop is waiting on a silent source.
    Outside the main thread (an embedding app) signals are left alone."""
    stop = StopSignal()

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and second_interrupts:
            raise KeyboardInterrupt
        if not stop.is_set():
            stop.name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        stop.set()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
