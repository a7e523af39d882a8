"""Options and helpers shared by the commands. Only click at import time: `--help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from distillgan.errors import DistillganError

PRECISIONS = ["32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64"]


def console_for(stderr: bool = False) -> Any:
    from rich.console import Console

    # warnings and errors stay one line each, whatever the terminal width (logs, pipes)
    return Console(stderr=stderr, highlight=False, soft_wrap=stderr)


def models_dir_option(f: Any) -> Any:
    return click.option(
        "--models-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder of models (default: $DISTILLGAN_MODELS_DIR or ~/distillgan/models).",
    )(f)


def trainer_options(f: Any) -> Any:
    """Lightning's own values, passed straight to the Trainer."""
    options = [
        click.option("--accelerator", default=None, help="Lightning accelerator: auto, cpu, gpu, cuda, mps…"),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None, help="Lightning precision."),
        click.option(
            "--devices", default="auto", show_default=True, help="Lightning devices (count, list or auto)."
        ),
        click.option("--num-nodes", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("--strategy", default="auto", show_default=True, help="Lightning strategy, e.g. ddp."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_trainer_options(
    accelerator: str | None,
    precision: str | None,
    devices: str,
    num_nodes: int,
    strategy: str,
    default_accelerator: str,
) -> Any:
    from distillgan.training import TrainerOptions

    parsed_devices: str | int = int(devices) if devices.isdigit() else devices
    return TrainerOptions(
        accelerator=accelerator or default_accelerator,
        precision=precision,
        devices=parsed_devices,
        num_nodes=num_nodes,
        strategy=strategy,
    )


def ask_choice(question: str, choices: list[str], refuse: str) -> str:
    """Ask on the terminal; with nothing to read (no terminal, closed stdin), refuse instead of guessing."""
    try:
        return click.prompt(
            question, type=click.Choice(choices, case_sensitive=False), show_choices=True
        ).lower()
    except click.exceptions.Abort:
        raise DistillganError(refuse) from None


def ask_yes(question: str, refuse: str) -> bool:
    try:
        return click.confirm(question, default=False)
    except click.exceptions.Abort:
        raise DistillganError(refuse) from None


def load_corpus_verbose(folder: Path, console: Any, err: Any, **kwargs: Any) -> Any:
    from rich.markup import escape

    from distillgan.audio import FEW_FILES_WARNING_THRESHOLD, load_corpus

    # escape(): a file name may hold "[...]", which Rich would read as markup
    corpus = load_corpus(
        folder, on_skip=lambda v: err.print(f"[yellow]warning:[/yellow] {escape(v.describe())}"), **kwargs
    )
    if len(corpus.files) < FEW_FILES_WARNING_THRESHOLD:
        err.print(
            f"[yellow]warning:[/yellow] only {len(corpus.files)} usable file(s); "
            f"{FEW_FILES_WARNING_THRESHOLD}+ give a model more to learn from"
        )
    console.print(f"Corpus: {corpus.summary()}")
    return corpus


def print_run_end(console: Any, result: Any, stage: str) -> None:
    if result.cancelled or result.status != "complete":
        console.print(f"[bold]Checkpoint saved at epoch {result.epoch}. Resume anytime.[/bold]")
    else:
        console.print(
            f"[green]{stage} training complete[/green]: {result.epochs_completed} epochs, {result.steps} steps"
        )
    console.print(f"Model: {result.model_path}")
