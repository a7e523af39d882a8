"""Output that is not a terminal (a log file, a pipe): plain progress lines, no unanswerable
prompts, no wrapping at 80 columns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from distillgan.cli.common import ask_choice, ask_yes
from distillgan.errors import DistillganError
from tests.cli.conftest import CliRun
from tests.robustness.harness import TINY_VAE
from tests.vocoders.model_files import write_model_file


@pytest.mark.usefixtures("one_thread", "models_dir")
def test_training_logs_one_plain_progress_line_per_epoch(
    cli: CliRun, tiny_corpus: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_VAE, "train": {**TINY_VAE["train"], "epochs": 3}}))
    result = cli(["train", "vae", str(tiny_corpus), "--name", "rain", "--config", str(recipe)])
    assert result.exit_code == 0, result.stderr
    lines = re.findall(r"^epoch (\d+)/3 · step \d+/\d+ · (.*)$", result.stdout, re.MULTILINE)
    assert [int(epoch) for epoch, _ in lines] == [1, 2, 3], result.stdout
    for _, figures in lines:  # the live table's figures, named as its columns are
        assert re.fullmatch(r"loss \S+ · recon \S+ · KL \S+ · val recon \S+ · ETA \S+", figures), figures


@pytest.mark.parametrize(("answer", "expected"), [("fresh\n", "fresh"), ("y\n", True), ("\n", False)])
def test_a_piped_answer_is_read_and_logged(answer: str, expected: object) -> None:
    with CliRunner().isolation(input=answer) as (out, _, _):
        if isinstance(expected, str):
            assert (
                ask_choice("Resume or start fresh?", ["resume", "fresh"], "pass --resume or --fresh")
                == expected
            )
        else:
            assert ask_yes("Replace it?", "pass --yes") is expected
        assert (
            out.getvalue()
            .decode()
            .startswith(("Resume or start fresh? (resume, fresh): fresh", "Replace it?"))
        )


ASK = """
import sys
from distillgan.cli.common import ask_choice, ask_yes
from distillgan.errors import DistillganError
try:
    if sys.argv[1] == "choice":
        ask_choice("Resume from epoch 2 or start fresh?", ["resume", "fresh"], "pass --resume or --fresh")
    else:
        ask_yes("Replace it?", "pass --yes")
except DistillganError as exc:
    print(f"error: {exc}", file=sys.stderr)
"""


@pytest.mark.parametrize("kind", ["choice", "yes"])
def test_a_prompt_that_cannot_be_answered_is_never_printed(kind: str) -> None:
    """A real process whose stdin is empty (a cron job, a CI step): only the error is printed."""
    done = subprocess.run(
        [sys.executable, "-c", ASK, kind],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "" and done.stderr.startswith("error: pass --"), done
    with CliRunner().isolation(input="maybe\n"), pytest.raises(DistillganError, match="'maybe', not "):
        if kind == "choice":
            ask_choice("Resume or start fresh?", ["resume", "fresh"], "pass --resume or --fresh")
        else:
            ask_yes("Replace it?", "pass --yes")


def test_piped_model_info_is_not_wrapped(
    cli: CliRun, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    name = "a model with a long name to make a long first line"
    write_model_file(models_dir / f"{name}.distillgan")
    result = cli(["model", "info", name])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(name) and lines[0].endswith("KB)") and len(lines[0]) > 80
    assert (
        "auto vocoder: bigvgan — the model has no per-model vocoder yet, so the universal BigVGAN-v2 is used"
        in lines
    )
