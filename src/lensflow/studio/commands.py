"""`lensflow studio`: the local web app (REST API + UI) for making a classifier in the browser."""

from __future__ import annotations

from pathlib import Path

import typer


def studio_command(
    data_dir: Path = typer.Option(
        Path("studio-data"), "--data-dir", help="Where models, photos and jobs are kept."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; non-loopback needs --api-keys."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_keys: Path | None = typer.Option(
        None, "--api-keys", help="File of secret keys (one per line): API bearer keys + UI login."
    ),
    max_file_bytes: int = typer.Option(20_000_000, "--max-file-bytes", help="Largest photo."),
    max_files: int = typer.Option(1000, "--max-files", help="Most files per upload request."),
) -> None:
    """Studio: create a model, add photos per category (upload, zip, URLs, webcam), train, test
    and download the bundle, all in the browser. The REST API is documented at /docs.

    Example: lensflow studio --data-dir studio-data   (then open http://127.0.0.1:8000)

    Example: lensflow studio --host 0.0.0.0 --api-keys keys.txt
    """
    import uvicorn

    from lensflow.config import save_config
    from lensflow.extras import require
    from lensflow.progress import console
    from lensflow.studio.app import StudioConfig, check_security, create_app, read_api_keys
    from lensflow.studio.uploads import Limits

    require("torch", "sklearn", "matplotlib", extra="full")  # Studio trains and evaluates
    keys = read_api_keys(api_keys) if api_keys else ()
    config = StudioConfig(
        data_dir=data_dir,
        host=host,
        port=port,
        api_keys=keys,
        limits=Limits(max_file_bytes=max_file_bytes, max_files=max_files),
    )
    check_security(config)
    app = create_app(config)
    # The keys themselves never go to disk beside the data.
    save_config(
        StudioConfig(data_dir, host, port, ("<hidden>",) if keys else (), config.limits),
        data_dir / "studio.yaml",
    )
    console.print(f"lensflow Studio on http://{host}:{port}  (API docs: /docs)", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add `lensflow studio` to `app`."""
    app.command("studio")(studio_command)
