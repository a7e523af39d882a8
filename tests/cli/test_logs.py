"""Output that is not a terminal (a log file, a pipe): plain progress lines, no unanswerable
prompts, no wrapping at 80 columns."""

from __future__ import annotations

import re
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
            .startswith(("Resume or start fresh? [resume/fresh]: fresh", "Replace it?"))
        )


def test_a_prompt_that_cannot_be_answered_is_never_printed() -> None:
    for ask in (
        lambda: ask_choice("Resume or start fresh?", ["resume", "fresh"], "pass --resume or --fresh"),
        lambda: ask_yes("Replace it?", "pass --yes"),
    ):
        with (
            CliRunner().isolation(input=None) as (out, err, _),
            pytest.raises(DistillganError, match="pass --"),
        ):
            ask()
        assert out.getvalue() == b"" and err.getvalue() == b""
    with (
        CliRunner().isolation(input="maybe\n"),
        pytest.raises(DistillganError, match="'maybe', not resume or fresh"),
    ):
        ask_choice("Resume or start fresh?", ["resume", "fresh"], "pass --resume or --fresh")


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
