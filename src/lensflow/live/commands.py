"""`lensflow live`: classify what a camera sees, show it in a browser, publish it to MQTT."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import typer


def live(
    bundle: str | None = typer.Argument(
        None,
        help="Bundle directory made by `lensflow export` (optional with --pair-by-appearance).",
    ),
    source: str = typer.Option(
        ...,
        "--source",
        "-s",
        help="Camera index (0), video file, image folder (played in name order) or rtsp:// / http:// URL.",
    ),
    mqtt: str | None = typer.Option(
        None, "--mqtt", help="Publish to this broker: mqtt://\\[user:pass@]host:port."
    ),
    topic: str | None = typer.Option(
        None, "--topic", help="MQTT topic (default sockfound; sockpairs with --pair-by-appearance)."
    ),
    qos: int = typer.Option(0, "--qos", min=0, max=2, help="MQTT QoS (1: at least once)."),
    stdout: bool = typer.Option(False, "--stdout", help="Also print each message as a JSON line."),
    view: str | None = typer.Option(
        None, "--view", help="Serve the overlaid video at http://HOST:PORT/ (e.g. 127.0.0.1:8090)."
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Pace the source to N frames/s (files then play like a camera)."
    ),
    every: int = typer.Option(1, "--every", help="Classify every k-th frame of the source."),
    loop: bool = typer.Option(
        False, "--loop", help="Play a video file or image folder again at its end (until Ctrl-C)."
    ),
    threshold: float = typer.Option(
        0.5,
        "--threshold",
        help="Publish the blank label below this probability (0..1, or a percent 1..100).",
    ),
    blank_label: str = typer.Option(
        "Blank", "--blank-label", help="Label for low-confidence and blank-class frames."
    ),
    reject_unknown: bool = typer.Option(
        True,
        "--reject-unknown/--no-reject-unknown",
        help="Publish frames the bundle's open-set score calls unknown (none of its classes, "
        "e.g. an empty table) as --blank-label.",
    ),
    wait_broker: bool = typer.Option(
        False, "--wait-broker", help="Wait for an unreachable broker instead of failing."
    ),
    buffer: int = typer.Option(1000, "--buffer", help="Messages kept while the broker is away."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", help="Stop after N frames (default: until the source ends / Ctrl-C)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="onnxruntime threads."),
    stream_timeout: float = typer.Option(
        10.0,
        "--stream-timeout",
        min=0.1,
        help="Seconds an rtsp:// / http:// stream may take to answer or stay silent before it "
        "counts as down (then it is reopened with back-off). Example: --stream-timeout 5",
    ),
    pair_by_appearance: bool = typer.Option(
        False,
        "--pair-by-appearance",
        help="No classes, no training: pair socks that look alike as they are shown one by one "
        "(events: sighting, pair). Example: lensflow live --pair-by-appearance --source 0 --stdout",
    ),
    min_similarity: float | None = typer.Option(
        None,
        "--min-similarity",
        help="With --pair-by-appearance: cosine a pair announced live needs (default "
        "calibrated, see BENCHMARKS.md).",
    ),
    final_similarity: float | None = typer.Option(
        None,
        "--final-similarity",
        help="With --pair-by-appearance: when the feed ends, the socks still open pair "
        "best-first down to this cosine (default calibrated; 1 leaves them open).",
    ),
    empty_seconds: float = typer.Option(
        2.0, "--empty-seconds", help="With --pair-by-appearance: the feed starts empty this long."
    ),
    min_frames: int = typer.Option(
        5, "--min-frames", help="With --pair-by-appearance: frames a sighting needs to count."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No status line."),
    json_out: bool = typer.Option(
        False, "--json", help="Print a JSON summary on stdout at the end."
    ),
) -> None:
    """Classify frames from a camera, video, folder or stream; publish and show the predictions.

    Each prediction is published as the seed's JSON {"image": label, "probability": percent}
    plus "ts" (ms), "source" and "frame". Below --threshold, for a blank class, or when the
    bundle's open-set score says the frame shows none of its classes, the label is
    --blank-label. If the broker goes away, messages are buffered and flushed in order later.

    With --pair-by-appearance (no bundle needed): show the empty table for --empty-seconds,
    then socks one after another; each sighting is published as {"event": "sighting", "id",
    "start_ts", "end_ts", "frames"} and a match as {"event": "pair", "a", "b", "similarity",
    "final"}. A pair is announced live when it is clearly alike (--min-similarity); when the
    feed ends (or on Ctrl-C), the socks still open are paired best-first down to
    --final-similarity, with "final": true.

    Example: lensflow live bundle/ --source 0 --mqtt mqtt://127.0.0.1:1883 --view 127.0.0.1:8090

    Example: lensflow live bundle/ --source video.mp4 --stdout --no-reject-unknown

    Example: lensflow live --pair-by-appearance --source 0 --stdout --view 127.0.0.1:8090
    """
    from lensflow.live.loop import LiveConfig, threshold_from_cli

    common = dict(
        source=source, mqtt=mqtt, qos=qos, stdout=stdout, view=view, fps=fps, every=every,
        loop=loop, threshold=threshold_from_cli(threshold), blank_label=blank_label,
        wait_broker=wait_broker, buffer=buffer, max_frames=max_frames, threads=threads,
        stream_timeout=stream_timeout, reject_unknown=reject_unknown,
    )  # fmt: skip
    config: LiveConfig
    if pair_by_appearance:
        from lensflow.live.pair_loop import pair_config

        config = pair_config(
            bundle, topic, min_similarity, empty_seconds, min_frames, final_similarity, **common
        )
    else:
        if bundle is None:
            from lensflow.errors import LiveError

            raise LiveError(
                "live needs a BUNDLE (made by `lensflow export`), or --pair-by-appearance to "
                "pair look-alike socks without one"
            )
        config = LiveConfig(bundle=bundle, topic=topic or "sockfound", **common)
    summary = run_command(config, quiet=quiet)
    if json_out:
        typer.echo(json.dumps({"config": _config_dict(config), **summary}))


def _config_dict(config: Any) -> dict[str, Any]:
    from lensflow.config import config_to_dict

    d = config_to_dict(config)
    if d.get("mqtt"):
        from lensflow.messaging import parse_mqtt_url

        d["mqtt"] = str(parse_mqtt_url(d["mqtt"]))  # never echo a password
    return d


def run_command(config: Any, quiet: bool = False) -> dict[str, Any]:
    """Open bundle, source, sinks and view (failing early, in that order), run the loop with a
    rich status line, and close everything whatever happens."""

    from rich.live import Live
    from rich.text import Text

    from lensflow.live.loop import MqttSink, StdoutSink, run_live
    from lensflow.live.pair_loop import PairConfig, embedding_predictor, run_pairing
    from lensflow.live.sources import open_source, source_kind
    from lensflow.live.view import FrameHub, ViewServer, parse_host_port
    from lensflow.predictor import Predictor
    from lensflow.progress import console
    from lensflow.signals import stop_on_signals

    config.validate()
    source_kind(config.source)  # a missing source fails before the bundle loads
    view_addr = parse_host_port(config.view) if config.view else None
    if isinstance(config, PairConfig):  # no classes: the backbone's embeddings
        predictor, runner = embedding_predictor(config), run_pairing
    else:
        predictor, runner = Predictor.from_bundle(config.bundle, threads=config.threads), run_live
    sinks: list[Any] = []
    hub = None
    line = Text("starting ...")

    def on_event(message: str) -> None:
        if not quiet:
            console.print(f"[yellow]{message}")

    def on_classified(summary: Any, decision: Any) -> None:
        # Short enough for an 80-column terminal; MQTT trouble only when there is some.
        mqtt_note = ""
        for sink in sinks:
            if isinstance(sink, MqttSink):
                st = sink.client.stats
                if not st.connected:
                    mqtt_note += "  [red]broker lost[/]"
                if st.buffered > 1:
                    mqtt_note += f"  buffered {st.buffered}"
                if st.dropped:
                    mqtt_note += f"  [red]dropped {st.dropped}[/]"
        # --pair-by-appearance decides per sighting, not per frame: no class index, no percent.
        percent = f" {decision.probability * 100:.1f}%" if decision.index >= 0 else ""
        line.truncate(0)
        line.append_text(
            Text.from_markup(
                f"read {summary.frames_read}  classified {summary.classified}  "
                f"published {summary.published}  {summary.fps:.1f} fps  "
                f"[bold]{decision.label}[/]{percent}{mqtt_note}"
            )
        )

    with contextlib.ExitStack() as stack:
        source = open_source(
            config.source, on_event, config.reconnect_timeout, config.loop, config.stream_timeout
        )
        stack.callback(source.close)
        if config.stdout:
            sinks.append(StdoutSink())
        if config.mqtt:
            if config.wait_broker and not quiet:
                console.print(f"waiting for the MQTT broker at {config.mqtt} ...")
            sinks.append(
                MqttSink(config.mqtt, config.topic, config.qos, config.buffer, config.wait_broker)
            )
        if view_addr:
            hub = FrameHub()
            server = ViewServer(hub, *view_addr, title=config.source)
            stack.callback(server.close)
            console.print(f"view: [bold]{server.url}[/]")
        if not quiet:
            stack.enter_context(Live(line, console=console, refresh_per_second=4))
        # The first Ctrl-C or SIGTERM stops after the current frame: the sinks flush and
        # --pair-by-appearance pairs the socks still open; a second one interrupts at once.
        stop = stack.enter_context(stop_on_signals(second_interrupts=True))
        try:
            summary = runner(
                config, predictor, sinks, hub=hub, on_event=on_event,
                on_classified=on_classified, source=source, stop=stop,
            )  # fmt: skip
            if stop.name:
                summary.stopped_by = f"interrupted ({stop.name})"
        finally:
            for sink in sinks:  # run_live closed them; a failed start left them open
                with contextlib.suppress(Exception):
                    sink.close()
    if not quiet and not console.is_terminal:
        console.line()  # rich leaves the last status line unterminated off a terminal
    result = summary.to_dict()
    if not quiet:
        dropped = result["sinks"].get("mqtt_dropped", 0)
        note = f", [red]{dropped} MQTT messages dropped[/]" if dropped else ""
        console.print(
            f"{summary.stopped_by}: {summary.frames_read} frames read, {summary.classified} "
            f"classified, {summary.published} published in {summary.seconds:.1f}s "
            f"({summary.fps:.1f} fps){note}",
            highlight=False,
        )
    return result


def register(app: typer.Typer) -> None:
    """Add `lensflow live` to the app."""
    app.command("live")(live)
