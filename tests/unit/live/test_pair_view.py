"""The browser view of `live --pair-by-appearance`: the strip of open socks, a found pair flashing."""

from __future__ import annotations

import numpy as np

from lensflow.live.appearance import Pair
from lensflow.live.pair_loop import THUMB, PairView, _headline


def _thumb(value: int) -> np.ndarray:
    return np.full((THUMB, THUMB, 3), value, np.uint8)


def test_open_socks_sit_in_the_strip_and_a_pair_flashes_then_fades() -> None:
    view = PairView(flash_frames=3)
    frame = np.full((480, 640, 3), 200, np.uint8)
    view.opened(1, _thumb(10))
    view.opened(2, _thumb(50))
    out = view.render(frame, "empty table", (160, 160, 160), 12.0, None)
    # Thumbnails along the bottom, oldest first (8 px in, 8 px apart), below the id label.
    y = 480 - THUMB - 8 + THUMB // 2
    assert (out[y, 8 + THUMB // 2] == 10).all() and (out[y, 16 + THUMB + THUMB // 2] == 50).all()
    assert _headline(None, view) == "empty table  (2 open)"

    view.paired(Pair(1, 3, 0.91), _thumb(90))
    assert list(view.thumbs) == [2]  # #1 left the strip with its partner
    assert _headline(None, view) == "pair #1 + #3  0.91"
    flashing = view.render(frame, "pair", (80, 220, 80), 12.0, None)
    assert not np.array_equal(flashing[70:230], out[70:230])  # the two socks drawn large
    for _ in range(3):
        view.tick()
    assert view.flash is None and _headline(None, view) == "empty table  (1 open)"


def test_two_pairs_found_at_once_flash_one_after_the_other() -> None:
    view = PairView(flash_frames=2)
    for i in (1, 2):
        view.opened(i, _thumb(i))
    view.paired(Pair(1, 3, 0.9), _thumb(3))
    view.paired(Pair(2, 4, 0.88), _thumb(4))
    seen = []
    for _ in range(5):
        seen.append(view.flash[0].a if view.flash else None)
        view.tick()
    assert seen == [1, 1, 2, 2, None]
