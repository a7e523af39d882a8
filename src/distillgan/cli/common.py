"""Options and helpers shared by the commands. Only click at import time: `--help` stays fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from distillgan.errors import ConfigError, DistillganError
from distillgan.progress import checkpoint_saved
from distillgan.runs import PRECISIONS, SETTINGS


def console_for(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    # warnings and errors stay one line each, whatever the terminal width; so does every line
    # written to a file or a pipe: what logs and scripts read is never wrapped at 80 columns
    console.soft_wrap = stderr or not console.is_terminal
    return console


class SettingType(click.ParamType):
    """A training setting checked by the library's rule (:data:`distillgan.runs.SETTINGS`): the
    same check and message as the UI's form."""

    def __init__(self, key: str) -> None:
        self.setting = SETTINGS[key]
        self.name = "integer" if self.setting.integer else "float"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.setting.parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def models_dir_option(f: Any) -> Any:
    return click.option(
        "--models-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder of models (default: $DISTILLGAN_MODELS_DIR or ~/distillgan/models).",
    )(f)


def trainer_options(f: Any) -> Any:
    """Lightning's own values: the accelerator and precision override the recipe's (its
    ``train.accelerator`` and ``train.precision``); devices, nodes and strategy go straight to the
    Trainer (:func:`build_trainer_options`)."""
    options = [
        click.option(
            "--accelerator",
            default=None,
            help="Lightning accelerator: auto, cpu, gpu, cuda, mps… (default: the recipe's).",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default=None,
            help="Lightning precision (default: the recipe's).",
        ),
        click.option(
            "--devices", default="auto", show_default=True, help="Lightning devices (count, list or auto)."
        ),
        click.option("--num-nodes", type=click.IntRange(min=1), default=1, show_default=True),
        click.option("--strategy", default="auto", show_default=True, help="Lightning strategy, e.g. ddp."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_trainer_options(devices: str, num_nodes: int, strategy: str) -> Any:
    """The :class:`~distillgan.training.TrainerOptions` of ``--devices``, ``--num-nodes`` and
    ``--strategy`` (a number of devices given as digits becomes an int, as Lightning wants it)."""
    from distillgan.training import TrainerOptions

    parsed_devices: str | int = int(devices) if devices.isdigit() else devices
    return TrainerOptions(devices=parsed_devices, num_nodes=num_nodes, strategy=strategy)


# Rank zero's resume-or-fresh decision, for the processes Lightning's own launcher starts: they
# re-run the command line after rank zero has decided (perhaps on the user's answer).
DECISION_ENV = "DISTILLGAN_RUN_DECISION"
# Where each launcher says which process this is: torchrun (RANK; GROUP_RANK: the node), srun
# (SLURM_PROCID), Lightning's own launcher and its multi-node set-up (NODE_RANK, LOCAL_RANK).
_RANK_VARIABLES = ("RANK", "GROUP_RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
NOT_ASKED = "processes started by torchrun or srun, or on several nodes, are never asked"


def _count(name: str) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else 1


@dataclass(frozen=True)
class Launch:
    """This process's place in a training run of one or many processes.

    Every process runs the whole command. Only global rank zero takes the model's lock, asks
    questions, writes and reports. The others reach the same decision from the same command
    line and model file, or, when Lightning's own launcher started them, get rank zero's.
    """

    rank_zero: bool
    may_ask: bool  # nobody else needs the answer: a single process, or Lightning's launcher on one node
    decision: str | None  # "resume" or "fresh": rank zero's, passed on by Lightning's launcher

    @classmethod
    def current(cls, num_nodes: int) -> Launch:
        rank_zero = all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)
        launched_together = _count("WORLD_SIZE") > 1 or (
            "SLURM_PROCID" in os.environ and _count("SLURM_NTASKS") > 1
        )
        return cls(
            rank_zero=rank_zero,
            may_ask=rank_zero and num_nodes == 1 and not launched_together,
            decision=None if rank_zero else os.environ.get(DECISION_ENV),
        )

    @contextmanager
    def agreed(self) -> Iterator[None]:
        """Decisions every process reaches alike from the command line and the model file: a
        refusal is said once, by rank zero; the other ranks just exit (nobody waits for them)."""
        try:
            yield
        except DistillganError:
            if self.rank_zero:
                raise
            raise SystemExit(1) from None

    @contextmanager
    def passed_on(self, resume: bool) -> Iterator[None]:
        """Rank zero's decision, for the processes Lightning's launcher starts during training."""
        os.environ[DECISION_ENV] = "resume" if resume else "fresh"
        try:
            yield
        finally:
            os.environ.pop(DECISION_ENV, None)


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


def _piped_answer(question: str, refuse: str) -> str:
    """Without a terminal an answer can only be piped in: it is read before the question is shown,
    so a question nobody can answer is never printed above its error."""
    try:
        line = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):
        line = ""
    if not line:
        raise DistillganError(refuse)
    answer = line.strip()
    click.echo(f"{question} {answer}")  # the log shows what was asked and what was answered
    return answer


def ask_choice(question: str, choices: list[str], refuse: str, *, may_ask: bool = True) -> str:
    """Ask on the terminal; without one, take an answer piped in, and with nothing to read (closed
    stdin) refuse instead of guessing, the question unprinted.

    ``may_ask`` false (see :class:`Launch`): refuse at once, saying why nothing was asked.
    """
    if not may_ask:
        raise DistillganError(f"{refuse} ({NOT_ASKED})")
    if not _stdin_is_terminal():
        answer = _piped_answer(f"{question} ({', '.join(choices)}):", refuse).lower()
        if answer not in choices:
            raise DistillganError(f"{refuse} (the answer given was '{answer}', not {' or '.join(choices)})")
        return answer
    try:
        return click.prompt(
            question, type=click.Choice(choices, case_sensitive=False), show_choices=True
        ).lower()
    except click.exceptions.Abort:
        raise DistillganError(refuse) from None


def ask_yes(question: str, refuse: str, *, may_ask: bool = True) -> bool:
    if not may_ask:
        raise DistillganError(f"{refuse} ({NOT_ASKED})")
    if not _stdin_is_terminal():
        answer = _piped_answer(f"{question} [y/N]:", refuse).lower()
        if answer not in ("", "y", "yes", "n", "no"):
            raise DistillganError(f"{refuse} (the answer given was '{answer}', not y or n)")
        return answer in ("y", "yes")
    try:
        return click.confirm(question, default=False)
    except click.exceptions.Abort:
        raise DistillganError(refuse) from None


def load_corpus_verbose(folder: Path, console: Any, err: Any, **kwargs: Any) -> Any:
    from rich.markup import escape

    from distillgan.corpus import FEW_FILES_WARNING_THRESHOLD, load_corpus

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
        console.print(f"[bold]{checkpoint_saved(result.epochs_completed)}[/bold]")
    else:
        console.print(
            f"[green]{stage} training complete[/green]: {result.epochs_completed} epochs, {result.steps} steps"
        )
    console.print(f"Model: {result.model_path}")
