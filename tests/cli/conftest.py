"""Run the real entry point (``main``: error handling and exit codes included) in-process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
