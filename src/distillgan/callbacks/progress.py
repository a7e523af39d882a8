"""Turn Lightning's hooks into ProgressEvents for any listener (Rich, Gradio, tests)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch

from distillgan.progress import ProgressEvent, ProgressListener


class ProgressReporter(L.Callback):
    """Turns the run into :class:`~distillgan.progress.ProgressEvent`s for ``listener``.

    Args:
        listener: any callable taking one event (a Rich display, a UI queue, a test's list).
        stage: ``"vocoder"`` or ``"vae"``, copied into every event.
        min_interval_s: step events are emitted at most this often.

    Emits ``start`` (``path`` = the logger's log directory), ``step``, ``epoch`` (after each
    training epoch, validation metrics included) and ``end``, on rank zero only. Steps are
    batches (generator steps for the vocoder), ``epochs_done`` counts completed epochs (what
    front ends show), and ``eta_s`` extrapolates the pace of this run.
    """

    def __init__(self, listener: ProgressListener, stage: str, *, min_interval_s: float = 0.25) -> None:
        self.listener = listener
        self.stage = stage
        self.min_interval_s = min_interval_s
        self._start_time = 0.0
        self._start_step = 0
        self._last_emit = 0.0

    def _totals(self, trainer: L.Trainer) -> tuple[int, int, int]:
        batches = trainer.num_training_batches
        per_epoch = int(batches) if math.isfinite(batches) else 0
        step = int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)
        return step, per_epoch * (trainer.max_epochs or 0), per_epoch

    def _epochs_done(self, trainer: L.Trainer) -> int:
        """Epochs completed, from the batches trained (every epoch has the same number): Lightning's
        ``current_epoch`` moves on when a run stops mid-epoch, as if that epoch were done."""
        step, _, per_epoch = self._totals(trainer)
        return step // per_epoch if per_epoch else trainer.current_epoch

    def _metrics(self, trainer: L.Trainer) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in trainer.callback_metrics.items():
            if (isinstance(value, torch.Tensor) and value.numel() == 1) or isinstance(value, (int, float)):
                out[key] = float(value)
        return out

    def _emit(self, trainer: L.Trainer, kind: str, **extra: Any) -> None:
        if not trainer.is_global_zero:
            return
        step, total_steps, _ = self._totals(trainer)
        done_here = step - self._start_step
        elapsed = time.monotonic() - self._start_time
        eta = (total_steps - step) * elapsed / done_here if done_here > 0 else None
        self.listener(
            ProgressEvent(
                stage=self.stage,  # type: ignore[arg-type]
                kind=kind,  # type: ignore[arg-type]
                epoch=min(trainer.current_epoch + 1, trainer.max_epochs or trainer.current_epoch + 1),
                epochs_done=self._epochs_done(trainer),
                total_epochs=trainer.max_epochs or 0,
                step=step,
                total_steps=total_steps,
                metrics=self._metrics(trainer),
                eta_s=eta,
                **extra,
            )
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_time = time.monotonic()
        self._start_step = self._totals(trainer)[0]
        log_dir = trainer.logger.log_dir if trainer.logger is not None else None
        self._emit(trainer, "start", path=log_dir)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_emit >= self.min_interval_s:
            self._last_emit = now
            self._emit(trainer, "step")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, "epoch")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(trainer, "end")
