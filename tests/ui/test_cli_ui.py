"""`distillgan ui` as a user starts it: loopback only by default, stops cleanly on Ctrl+C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.ui.conftest import free_port

DISTILLGAN = shutil.which("distillgan") or "distillgan"


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ui_command_serves_on_loopback_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    models = tmp_path / "models"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [DISTILLGAN, "ui", "--port", str(port), "--models-dir", str(models)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # started as a script's background job is: SIGINT inherited as ignored (the harder case)
        preexec_fn=ignore_sigint,
    )
    try:
        banner = process.stdout.readline()  # type: ignore[union-attr]
        assert banner.startswith(f"distillgan UI at http://127.0.0.1:{port}/ (models in {models})"), banner
        assert listening_addresses(port) == {"127.0.0.1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as response:
            assert json.loads(response.read())["title"] == "distillgan"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    assert models.is_dir()


def test_help_names_the_options() -> None:
    started = time.monotonic()
    out = subprocess.run([DISTILLGAN, "ui", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--host", "--port", "--models-dir", "--bigvgan-dir", "127.0.0.1"):
        assert option in out
    assert time.monotonic() - started < 20  # no gradio or torch import for --help
