"""`distillgan ui` as a user starts it: loopback only by default, a login for any other address,
stops cleanly on Ctrl+C."""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

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


def test_help_names_the_options() -> None:
    started = time.monotonic()
    out = subprocess.run([DISTILLGAN, "ui", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--host", "--port", "--models-dir", "--bigvgan-dir", "127.0.0.1", "--auth", "--no-auth"):
        assert option in out
    assert time.monotonic() - started < 20  # no gradio or torch import for --help


def test_an_address_other_than_loopback_needs_a_login(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is nobody's address: nothing could be served there in any case
    port = free_port()
    done = subprocess.run(
        [DISTILLGAN, "ui", "--host", "192.0.2.1", "--port", str(port), "--models-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "--auth USER:PASS" in done.stderr and "--no-auth" in done.stderr


def test_ui_command_serves_on_loopback_asks_for_the_login_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    models = tmp_path / "models"
    process = subprocess.Popen(
        [DISTILLGAN, "ui", "--port", str(port), "--models-dir", str(models), "--auth", "alice:s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # started as a script's background job is: SIGINT inherited as ignored (the harder case)
        preexec_fn=ignore_sigint,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        banner = process.stdout.readline()  # type: ignore[union-attr]
        assert banner.startswith(f"distillgan UI at {url}/ (models in {models})"), banner
        assert listening_addresses(port) == {"127.0.0.1"}
        # every visitor is asked for the password
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/config", timeout=30)
        assert refused.value.code == 401
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        for password, status in (("guess", 400), ("s3cret", 200)):
            form = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
            try:
                status_got = browser.open(f"{url}/login", data=form, timeout=30).status
            except urllib.error.HTTPError as error:
                status_got = error.code
            assert status_got == status
        with browser.open(f"{url}/", timeout=30) as response:
            assert response.status == 200
        with browser.open(f"{url}/config", timeout=30) as response:
            assert json.loads(response.read())["title"] == "distillgan"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    assert models.is_dir()
