"""Run the real entry point (``main``: error handling and exit codes included) in-process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from distillgan.cli.main import main


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


CliRun = Callable[..., CliResult]


def invoke(args: list[str], input: str | None = None) -> CliResult:
    """``distillgan ARGS`` with ``input`` on stdin (no terminal), like a user in a pipe would."""
    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, _):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return CliResult(code, stdout, stderr)


@pytest.fixture
def cli() -> CliRun:
    return invoke


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """A user mistake: non-zero exit, one `error: ...` line last on stderr (warnings may precede it),
    no traceback."""
    assert result.exit_code != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert all(line.startswith(("warning:", "error: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def run_until_sigint(
    args: list[str], env: dict[str, str], *, target: str = "main"
) -> tuple[int, str, str, float]:
    """Start `distillgan ARGS`, wait until training runs, send SIGINT; exit code, output, seconds to exit."""
    process = subprocess.Popen(
        [shutil.which("distillgan") or "distillgan", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "TensorBoard:" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(180), "training never started: " + "".join(lines)
        time.sleep(3.0)  # a few steps into the run
        pid = process.pid if target == "main" else _child_pid(process.pid)
        sent = time.monotonic()
        os.kill(pid, signal.SIGINT)
        code = process.wait(120)
        seconds = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    assert process.stderr is not None
    return code, "".join(lines), process.stderr.read(), seconds


def _child_pid(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, "no DDP worker process"
    return int(children[0])


def cli_env(models_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DISTILLGAN_MODELS_DIR": str(models_dir),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
