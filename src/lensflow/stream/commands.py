"""`lensflow pairs`: smooth noisy per-frame predictions into sightings and count sock pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from lensflow.errors import StreamError


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2))


def pairs(
    mqtt: str | None = typer.Option(
        None, "--mqtt", help="Subscribe to this broker: mqtt://\\[user:pass@]host:port."
    ),
    topic: str = typer.Option("sockfound", "--topic", help="Topic of the prediction messages."),
    out_topic: str = typer.Option(
        "sockpairs", "--out-topic", help='Publish table changes here as JSON ("" = do not).'
    ),
    window: str = typer.Option(
        "session:2s",
        "--window",
        help="session:GAP (one sighting per uninterrupted showing) or tumbling:SIZE (the seed's "
        "5 s windows aligned to the epoch).",
    ),
    min_count: int = typer.Option(
        4, "--min-count", help="Events a window needs to count as a sighting."
    ),
    min_probability: float = typer.Option(
        0.0, "--min-probability", help="Drop events under this probability (percent, 0..100)."
    ),
    blank: list[str] = typer.Option(
        ["Blank"], "--blank", help="Label meaning 'no sock' (repeat for several)."
    ),
    grace: str = typer.Option(
        "2s", "--grace", help="How late (in event time) an event may arrive and still count."
    ),
    state: Path | None = typer.Option(
        None, "--state", help="SQLite state file: a restart continues where it stopped."
    ),
    view: str | None = typer.Option(
        None, "--view", help="Serve the live table at http://HOST:PORT/ (e.g. 127.0.0.1:8765)."
    ),
    replay: Path | None = typer.Option(
        None,
        "--replay",
        help="Read messages from a JSON-lines file instead of a broker ('-' = standard input).",
    ),
    export_ksql: Path | None = typer.Option(
        None, "--export-ksql", help="Write the equivalent ksqlDB + Kafka Connect files to DIR."
    ),
    engine: str = typer.Option(
        "builtin",
        "--engine",
        help="builtin (this process) or flink: run the --replay as one Flink SQL job in a local "
        "mini-cluster (needs the [flink] extra and Java 17), e.g. --engine flink.",
    ),
    export_flink: Path | None = typer.Option(
        None,
        "--export-flink",
        help="Write the same job for a Flink cluster (Flink SQL over Kafka, the MQTT connector "
        "config, a README) to DIR.",
    ),
    qos: int = typer.Option(1, "--qos", help="MQTT QoS for the subscription and the changes."),
    client_id: str | None = typer.Option(
        None, "--client-id", help="Fixed MQTT client id (default: derived from --state)."
    ),
    wait_broker: bool = typer.Option(
        False, "--wait-broker", help="Wait for an unreachable broker instead of failing."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --export-ksql or --export-flink DIR."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live table or summary."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the final table as JSON on stdout at the end."
    ),
) -> None:
    """Count sock pairs from a stream of predictions (MQTT or a replay file).

    Blank and low-probability predictions are dropped; the rest are grouped per label into windows (event time from the message's "ts", else arrival time); a window with at least --min-count events is one sighting; an even number of sightings is a Pair. Changes of the table are published to --out-topic; --state keeps everything in SQLite across restarts.

    Example: lensflow pairs --mqtt mqtt://127.0.0.1:1883 --topic sockfound --state pairs.db --view 127.0.0.1:8765

    Example: lensflow pairs --replay events.jsonl --window tumbling:5s --json

    Example: lensflow live bundle/ --source video.mp4 --stdout | lensflow pairs --replay -

    Example: lensflow pairs --export-ksql ksql/ --window tumbling:5s

    Example: lensflow pairs --replay events.jsonl --engine flink --json

    Example: lensflow pairs --export-flink flink/ --window tumbling:5s
    """
    from lensflow.stream.config import PairsConfig

    modes = [m for m, v in (("--mqtt", mqtt), ("--replay", replay)) if v]
    exports = [e for e in (export_ksql, export_flink) if e is not None]
    if not exports and not modes:
        raise StreamError(
            "give --mqtt mqtt://host:port, --replay events.jsonl, --export-ksql DIR or "
            "--export-flink DIR; e.g. lensflow pairs --mqtt mqtt://127.0.0.1:1883 --topic sockfound"
        )
    _check_engine(engine, mqtt, state, view, replay)
    config = PairsConfig(
        window=window,
        min_count=min_count,
        min_probability=min_probability,
        blank=tuple(blank),
        grace=grace,
        mqtt=mqtt,
        topic=topic,
        out_topic=out_topic,
        qos=qos,
        client_id=client_id,
        state=state,
        view=view,
        replay=replay,
    )
    if exports:
        _export(config, export_ksql, export_flink, overwrite, quiet, as_json)
    elif engine == "flink":
        _replay_flink(config, quiet, as_json)
    elif replay is not None:
        _replay(config, quiet, as_json)
    else:
        _live(config, wait_broker, quiet, as_json)


def _check_engine(
    engine: str, mqtt: str | None, state: Path | None, view: str | None, replay: Path | None
) -> None:
    if engine not in ("builtin", "flink"):
        raise StreamError(f"--engine must be builtin or flink, got {engine!r}")
    if engine == "builtin":
        return
    given = [o for o, v in (("--mqtt", mqtt), ("--state", state), ("--view", view)) if v]
    if given or replay is None:
        not_these = f" (not {', '.join(given)})" if given else ""
        raise StreamError(
            f"--engine flink runs a --replay file as one Flink job{not_these}; "
            "for a live stream use --export-flink DIR on a Flink cluster"
        )


def _export(
    config: Any,
    ksql_out: Path | None,
    flink_out: Path | None,
    overwrite: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    from lensflow.progress import console
    from lensflow.stream.flink import export_flink
    from lensflow.stream.ksql import export_ksql

    done = []
    for out, export in ((ksql_out, export_ksql), (flink_out, export_flink)):
        if out is not None:
            files = export(config, out, overwrite=overwrite)
            done.append({"out": str(out), "files": [str(f) for f in files]})
            if not as_json and not quiet:
                names = ", ".join(f.name for f in files)
                console.print(f"wrote {names} to {out}/ (see README.md there)")
    if as_json:
        _echo_json(done[0] if len(done) == 1 else done)


def _replay_flink(config: Any, quiet: bool, as_json: bool) -> None:
    from lensflow.progress import console, make_progress
    from lensflow.stream.flink import check_flink, run_flink
    from lensflow.stream.view import rich_table

    check_flink()  # before reading anything: the missing extra or Java is the likely mistake
    from_file = str(config.replay) != "-"
    total = config.replay.stat().st_size if from_file and config.replay.is_file() else None
    with make_progress(quiet=quiet) as progress:
        name = config.replay.name if from_file else "stdin"
        task = progress.add_task(f"read {name}", total=total, rate="")

        def job_starts() -> None:
            if total is not None:
                progress.update(task, completed=total)
            progress.add_task("flink job (local mini-cluster)", total=None, rate="")

        result = run_flink(config, on_line=_progress_cb(progress, task), on_prepared=job_starts)
    if as_json:
        _echo_json(result.final())
    elif not quiet:
        console.print(rich_table(result.view()))


def _replay(config: Any, quiet: bool, as_json: bool) -> None:
    from lensflow.progress import console, make_progress
    from lensflow.stream.runner import replay
    from lensflow.stream.view import rich_table

    client = _publisher(config) if config.mqtt and config.out_topic else None
    sinks = []
    if client is not None:
        out_topic, qos = config.out_topic, config.qos
        sinks.append(lambda c: client.publish(out_topic, c.to_message(), qos=qos))
    from_file = str(config.replay) != "-"
    total = config.replay.stat().st_size if from_file and config.replay.is_file() else None
    try:
        with make_progress(quiet=quiet) as progress:
            name = config.replay.name if from_file else "stdin"
            task = progress.add_task(f"replay {name}", total=total, rate="")
            pipeline = replay(config, sinks=sinks, on_line=_progress_cb(progress, task))
            if total is not None:
                progress.update(task, completed=total)
    finally:
        if client is not None:
            client.close()
    if as_json:
        _echo_json(pipeline.engine.table.final())
    elif not quiet:
        console.print(rich_table(pipeline.view()))


def _progress_cb(progress: Any, task: Any) -> Any:
    """Advance the bar by bytes, but only every 4096 lines: rich costs more than an event."""
    pending = [0, 0]

    def on_line(nbytes: int) -> None:
        pending[0] += nbytes
        pending[1] += 1
        if pending[1] >= 4096:
            t = progress.tasks[task]
            progress.update(task, advance=pending[0], rate=f"{(t.speed or 0) / 1e6:,.1f} MB/s")
            pending[0] = pending[1] = 0

    return on_line


def _publisher(config: Any) -> Any:
    from lensflow.messaging import MqttClient

    return MqttClient(config.mqtt).connect()


def _live(config: Any, wait_broker: bool, quiet: bool, as_json: bool) -> None:
    from rich.live import Live

    from lensflow.progress import console
    from lensflow.stream.runner import run_mqtt
    from lensflow.stream.view import ViewServer, rich_table

    pipeline_ref: list[Any] = []  # filled once the state is loaded and the broker answers
    server = None
    if config.view:
        host, port = config.view_address
        server = ViewServer(host, port, lambda: _current_view(config, pipeline_ref)).start()
    live = Live(console=console, auto_refresh=False, transient=False) if not quiet else None

    def ready(pipeline: Any) -> None:
        pipeline_ref.append(pipeline)
        if not quiet:
            where = f"; table at {server.url}" if server else ""
            console.print(f"listening on {config.mqtt} topic {config.topic!r}{where}")
        if live is not None:
            live.start()

    def tick(pipeline: Any) -> None:
        if live is not None:
            live.update(rich_table(pipeline.view()), refresh=True)

    try:
        pipeline = run_mqtt(config, wait_broker=wait_broker, on_tick=tick, ready=ready)
    finally:
        if live is not None:
            live.stop()
        if server is not None:
            server.stop()
    if as_json:
        _echo_json(pipeline.engine.table.final())


def _current_view(config: Any, pipeline_ref: list[Any]) -> dict[str, Any]:
    if pipeline_ref:
        return pipeline_ref[0].view()
    from lensflow.stream.engine import EngineStats

    return {
        "ready": False,  # still loading the state or waiting for the broker
        "rows": [],
        "stats": EngineStats().to_dict(),
        "stream_time": None,
        "window": str(config.windows),
        "min_count": config.min_count,
        "changes": 0,
        "duplicates": 0,
    }


def register(app: typer.Typer) -> None:
    """Add `lensflow pairs`."""
    app.command("pairs")(pairs)
