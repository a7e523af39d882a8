"""`distillgan ui`: serve the web UI (Gradio is imported only when the command runs)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from distillgan.cli.common import models_dir_option


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@click.command("ui")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 opens the UI to your network).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port to listen on (default: the first free one from 7860).",
)
@models_dir_option
@click.option(
    "--bigvgan-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding BigVGAN-v2's config.json and bigvgan_generator.pt (default: download once).",
)
def ui_command(host: str, port: int | None, models_dir: Path | None, bigvgan_dir: Path | None) -> None:
    """Open the web UI: train a model's VAE and vocoder with live progress, and generate sounds."""
    from distillgan.ui.app import build_app

    app = build_app(models_dir, bigvgan_dir=bigvgan_dir)
    url = app.launch(host, port)
    # `kill` saves checkpoints like Ctrl+C. SIGINT is set too: a process started in the
    # background of a script inherits SIGINT ignored, and Ctrl+C must stop it all the same.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"distillgan UI at {url} (models in {app.models_dir}); Ctrl+C stops it")
        threading.Event().wait()
    except KeyboardInterrupt:
        if app.manager.active_paths():
            click.echo("Stopping: saving the checkpoints of running trainings…")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        app.close()
