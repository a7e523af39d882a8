"""`distillgan ui`: serve the web UI (Gradio is imported only when the command runs)."""

from __future__ import annotations

import ipaddress
import signal
import threading
from pathlib import Path
from typing import Any

import click

from distillgan.cli.common import models_dir_option
from distillgan.errors import DistillganError


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _login(auth: str | None, no_auth: bool, host: str) -> tuple[str, str] | None:
    """The (user, password) visitors must give, from ``--auth USER:PASS``.

    Anyone who reaches the UI trains and generates as the user who runs it, and reads what that
    user can: any folder typed as a corpus (its sounds come back as previews), any recipe file.
    Beyond this machine (a --host other than loopback) a login is required, unless --no-auth says
    that something else guards the address (a VPN, an authenticating proxy).
    """
    if auth is None:
        if not (_loopback(host) or no_auth):
            raise DistillganError(
                f"--host {host} opens the UI to other machines: pass --auth USER:PASS "
                "(or --no-auth if something else guards that address)"
            )
        return None
    user, _, password = auth.partition(":")
    if not user or not password:
        raise DistillganError("--auth must be USER:PASS, both non-empty")
    return user, password


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
@click.option(
    "--auth",
    metavar="USER:PASS",
    envvar="DISTILLGAN_UI_AUTH",
    default=None,
    help="Ask every visitor for this user name and password (also $DISTILLGAN_UI_AUTH, which other "
    "users cannot see in the process list). Required with a --host other than loopback.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve a --host other than loopback without a login (only behind a VPN or an "
    "authenticating proxy: visitors train, generate and read files as you).",
)
def ui_command(
    host: str,
    port: int | None,
    models_dir: Path | None,
    bigvgan_dir: Path | None,
    auth: str | None,
    no_auth: bool,
) -> None:
    """Open the web UI: train a model's VAE and vocoder with live progress, and generate sounds."""
    login = _login(auth, no_auth, host)  # before importing Gradio: a refusal is instant
    from distillgan.ui.app import build_app

    app = build_app(models_dir, bigvgan_dir=bigvgan_dir)
    url = app.launch(host, port, auth=login)
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
