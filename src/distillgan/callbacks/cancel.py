"""Cancel a run from another thread (UI), a signal handler (CLI) or a test."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from distillgan.progress import CancelToken


class CancelOnRequest(L.Callback):
    """Stops training at the end of the current step once ``token`` is cancelled.

    ``token`` is a :class:`~distillgan.progress.CancelToken`: call ``token.cancel()`` from
    any thread (a UI button), a signal handler (Ctrl+C) or a test. Under DDP a cancel seen
    by any rank stops every rank (a one-number all-reduce per step). Setting
    ``trainer.should_stop`` lets :class:`~distillgan.callbacks.ModelFileCheckpoint` save
    the exact mid-epoch state at once.
    """

    def __init__(self, token: CancelToken) -> None:
        self.token = token

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        requested = self.token.cancelled
        if trainer.world_size > 1:
            flag = torch.tensor(float(requested), device=pl_module.device)
            requested = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
        if requested:
            trainer.should_stop = True
