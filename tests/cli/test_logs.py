"""Output that is not a terminal (a log file, a pipe): plain progress lines, no unanswerable
prompts, no wrapping at 80 columns."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from distillgan.cli.common import ask_choice, ask_yes
from distillgan.errors import DistillganError
from distillgan.progress import METRICS, TABLE
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
    lines = re.findall(r"^(\d+) of 3 epochs done · step \d+/\d+ · (.*)$", result.stdout, re.MULTILINE)
    assert [int(done) for done, _ in lines] == [1, 2, 3], result.stdout
    # the live table's figures, each named by its label in the one table of labels
    expected = " · ".join(f"{re.escape(METRICS[key].label)} \\S+" for key in TABLE["vae"])
    for _, figures in lines:
        assert figures.startswith("VAE total (weighted) ")
        assert re.fullmatch(f"{expected} · ETA \\S+", figures), figures


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
from distillgan.progress import METRICS, TABLE
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
    assert (
        lines[0].startswith(name) and re.search(r"\((\d+ KB|\d+\.\d MB)\)$", lines[0]) and len(lines[0]) > 80
    )
    assert (
        "auto vocoder: bigvgan — the model has no per-model vocoder yet, so the universal BigVGAN-v2 is used"
        in lines
    )


def test_every_front_end_labels_each_metric_from_the_one_table(tmp_path: Path) -> None:
    """The Rich table, the plain lines, the UI's stats table and its chart legends name a figure
    by its label in progress.METRICS, never by one of their own; labels and keys map 1:1."""
    import gradio as gr

    from distillgan.cli.display import COLUMNS, TrainingDisplay
    from distillgan.progress import ProgressEvent, labelled
    from distillgan.ui import views
    from distillgan.ui.jobs import JobManager, JobView
    from distillgan.ui.train_tab import TrainTab

    labels = {metric.label for metric in METRICS.values()}
    assert len(labels) == len(METRICS) and all(key == m.key for key, m in METRICS.items())

    def own_labels(pairs: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, label in pairs if METRICS[key].label != label]

    ui_series = [views.VAE_CHART, views.LOSS_CHART, views.MEL_CHART]
    manager = JobManager(tmp_path)
    try:
        with gr.Blocks():
            tab = TrainTab(manager)
        ui_series += [series for section in (tab.vae, tab.vocoder) for _, series in section.charts]
    finally:
        manager.shutdown(timeout=10)
    for stage in ("vae", "vocoder"):
        assert COLUMNS[stage] == views.STATS[stage] == labelled(TABLE[stage])
    for pairs in [*COLUMNS.values(), *views.STATS.values(), *ui_series]:
        assert own_labels(pairs) == []

    # what they render: every figure of an event, under its label
    metrics = {key: 1.5 for key in TABLE["vocoder"]}
    event = ProgressEvent("vocoder", "step", epoch=2, epochs_done=1, total_epochs=4, step=9, metrics=metrics)
    console = Console(file=io.StringIO(), width=300)
    display = TrainingDisplay(console, "vocoder")
    display(event)
    console.print(display._render())
    rich = console.file.getvalue()
    plain = display.plain_line(event)
    view = JobView(1, "vocoder", "m", "running", 1, False, False, event, (), None, None, None, None, ())
    table = views._stats_table(view)
    header = table.splitlines()[0]
    for key in TABLE["vocoder"]:
        label = METRICS[key].label
        assert label in rich and f"{label} 1.5" in plain and f"| {label} |" in header
    frame = views.chart_frame(
        JobView(
            1,
            "vocoder",
            "m",
            "running",
            1,
            False,
            False,
            event,
            ((1, "train/adv", 2.0),),
            None,
            None,
            None,
            None,
            (),
        ),
        views.LOSS_CHART,
    )
    assert list(frame.series) == ["G adversarial"]
