"""The `lensflow` command. Thin: each stage registers its own commands from `<stage>/commands.py`.

Command modules import heavy libraries (torch, onnxruntime, cv2) inside the command functions so
that `lensflow --help` and inference-only installs stay fast and torch-free.
"""

from __future__ import annotations

import typer
import typer.rich_utils

from lensflow import __version__
from lensflow.extras import missing_extra_message


def _plain_error(error: Exception) -> None:
    """Print a user error as click does: `Error: <message>` lines on stderr, never wrapped.

    typer draws errors in a rich panel that wraps at the terminal width, splitting paths and
    words across lines so they cannot be copied (and making tests depend on the width).
    Help keeps rich formatting; only errors go plain.
    """
    if error.__class__.__name__ == "NoArgsIsHelpError":  # typer already printed the help
        return
    error.show()


typer.rich_utils.rich_format_error = _plain_error

app = typer.Typer(
    name="lensflow",
    help=(
        "From a folder of photos to a live image classifier on a CPU.\n\n"
        "Example: lensflow data import photos/ --out ds && lensflow train ds --out run --mode quick"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Import, validate, split, pack and inspect datasets.\n\n"
    "Example: lensflow data import photos/ --out ds && lensflow data info ds",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lensflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """From a folder of photos to a live image classifier on a CPU."""


def _register_all() -> None:
    from lensflow.data import capture_commands, download_commands
    from lensflow.data import commands as data_commands
    from lensflow.evaluate import commands as evaluate_commands
    from lensflow.export import commands as export_commands
    from lensflow.live import commands as live_commands
    from lensflow.match import commands as match_commands
    from lensflow.serve import commands as serve_commands
    from lensflow.stream import commands as stream_commands
    from lensflow.studio import commands as studio_commands
    from lensflow.train import commands as train_commands

    data_commands.register(data_app)
    for module in (
        capture_commands,
        download_commands,
        train_commands,
        evaluate_commands,
        export_commands,
        serve_commands,
        live_commands,
        stream_commands,
        match_commands,
        studio_commands,
    ):
        module.register(app)


_register_all()


def main() -> None:
    try:
        app()
    except ModuleNotFoundError as e:
        message = missing_extra_message(e.name or "")
        if message is None:
            raise
        typer.echo(f"Error: {message}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
