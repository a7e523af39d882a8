"""Tiny real training runs that tests cancel and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from distillgan.corpus import load_corpus
from distillgan.modelfile import ModelLock
from distillgan.progress import CancelToken
from distillgan.recipes import load_vocoder_config
from distillgan.training import RunResult, train_vocoder


class CancelAfter(L.Callback):
    """Cancels the run's token once ``step`` generator steps are done (as Ctrl+C would)."""

    def __init__(self, token: CancelToken, step: int) -> None:
        self.token = token
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if pl_module.steps_trained == self.step:
            self.token.cancel("test")


def train_tiny_vocoder(
    path: Path, corpus: Path, *, resume: bool = False, cancel_after: int | None = None, **kwargs: Any
) -> RunResult:
    """The ``vocoder_tiny`` recipe (2 epochs of 8 steps on the tiny corpus) on a CPU, training
    state kept."""
    cfg = load_vocoder_config(
        None, {"train": {"keep_checkpoint": True, "accelerator": "cpu"}}, recipe="vocoder_tiny"
    )
    token = CancelToken()
    callbacks = [CancelAfter(token, cancel_after)] if cancel_after is not None else []
    callbacks += kwargs.pop("extra_callbacks", [])
    with ModelLock(path, owner="test") as lock:
        return train_vocoder(
            load_corpus(corpus),
            path,
            cfg,
            lock=lock,
            cancel=token,
            resume=resume,
            extra_callbacks=callbacks,
            **kwargs,
        )
