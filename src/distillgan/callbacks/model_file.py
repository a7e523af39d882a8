"""Write training state into the .distillgan file: every N epochs, on stop, at the end.

Lightning's own checkpoint dict (weights, optimizers, schedulers, loop progress, the
resumable data loader position, callback state) is stored, without pickle, in the
``<stage>_checkpoint`` section through :class:`ModelFileCheckpointIO`; the inference part
the module exports goes to the ``<stage>`` section in the same atomic write. Resume with
``trainer.fit(module, datamodule, ckpt_path=model_path)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Checkpoint

from distillgan.errors import ModelFileError, TrainingError
from distillgan.modelfile import ModelLock, Section, StageRecord, open_model, pack_tree, write_model
from distillgan.modelfile.records import Status
from distillgan.progress import ProgressEvent, ProgressListener


def _assert_finite(sections: dict[str, Section | None]) -> None:
    for name, section in sections.items():
        if section is None:
            continue
        for key, tensor in section.tensors.items():
            t = torch.as_tensor(tensor)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingError(f"refusing to write non-finite values ({name}/{key}) into the model file")


class ModelFileCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O into one section of a .distillgan file (rank zero writes)."""

    def __init__(self, stage: str, lock: ModelLock | None) -> None:
        self.section = f"{stage}_checkpoint"
        self.lock = lock

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        options = dict(storage_options or {})
        sections: dict[str, Section | None] = dict(options.get("sections", {}))
        sections[self.section] = None if options.get("drop_checkpoint") else pack_tree(checkpoint)
        _assert_finite(sections)
        if self.lock is None:
            raise RuntimeError("ModelFileCheckpointIO needs the model's writer lock")
        replace_damaged = bool(options.get("replace_damaged"))
        write_model(Path(path), sections, lock=self.lock, create=True, replace_damaged=replace_damaged)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        tree = open_model(Path(path)).tree(self.section)
        if map_location is not None:
            tree = _map_tensors(tree, map_location)
        return tree

    def remove_checkpoint(self, path: Any) -> None:
        if self.lock is None:
            raise RuntimeError("ModelFileCheckpointIO needs the model's writer lock")
        write_model(Path(path), {self.section: None}, lock=self.lock)


def _map_tensors(tree: Any, device: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: _map_tensors(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tensors(v, device) for v in tree)
    return tree


class ModelFileCheckpoint(Checkpoint):
    """Keeps a training run's state in its ``.distillgan`` model file (replaces ModelCheckpoint).

    Args:
        model_path: the model file (created if missing; other stages in it are kept as they are).
        stage: ``"vocoder"`` or ``"vae"``: the module's inference section goes to ``/<stage>``,
            Lightning's whole checkpoint to ``/<stage>_checkpoint``.
        every_n_epochs: also save at the end of every N-th epoch.
        keep_checkpoint: keep the resumable state after the last epoch (to extend the run later).
        lock: the model's held :class:`~distillgan.modelfile.ModelLock`; without one, rank zero
            takes the lock for the run (another process writing the same model is refused).
        owner: who holds the lock, shown to anyone refused.
        extra_sections: more sections written with the first save (e.g. the corpus manifest;
            None deletes a section).
        replace_damaged: the first save may replace a model file whose bytes are no readable
            model (a fresh run of the first stage; see ``write_model``).
        listener: receives a ``checkpoint`` :class:`~distillgan.progress.ProgressEvent` per save.

    Saves at once when training is asked to stop mid-epoch (``trainer.should_stop``, e.g.
    :class:`CancelOnRequest`; on an epoch's last batch, after that epoch's validation) and
    when a :class:`~distillgan.errors.TrainingError` stops it, so nothing trained is lost;
    and at the end, when the inference section is marked "complete". Every write replaces
    the file atomically, on rank zero only. Resume with
    ``trainer.fit(module, datamodule=..., ckpt_path=model_path)``: weights, optimizers,
    schedulers, loop counters and the data position come back exactly (runs draw their random
    numbers from their seed and step: :mod:`distillgan.seeding`).
    The LightningModule must provide ``model_file_sections(progress) -> dict[str, Section]``;
    ``progress`` is a :class:`~distillgan.modelfile.StageRecord`, which its stage's record extends.
    """

    def __init__(
        self,
        model_path: str | Path,
        stage: str,
        *,
        every_n_epochs: int = 1,
        keep_checkpoint: bool = False,
        lock: ModelLock | None = None,
        owner: str = "distillgan training",
        extra_sections: dict[str, Section | None] | None = None,
        replace_damaged: bool = False,
        listener: ProgressListener | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.stage = stage
        self.every_n_epochs = max(1, every_n_epochs)
        self.keep_checkpoint = keep_checkpoint
        self.lock = lock
        self.owner = owner
        self.extra_sections = dict(extra_sections or {})
        self.replace_damaged = replace_damaged
        self.listener = listener
        self._own_lock = False
        self._stopped = False
        self.last_saved: StageRecord | None = None  # the progress of the latest save
        self.started = False  # training began (a resumed state was restored and checked)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stopped = False
        self.started = False
        if trainer.is_global_zero and self.lock is None:
            self.lock = ModelLock(self.model_path, owner=self.owner).acquire()
            self._own_lock = True
        trainer.strategy.checkpoint_io = ModelFileCheckpointIO(
            self.stage, self.lock if trainer.is_global_zero else None
        )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._own_lock and self.lock is not None:
            self.lock.release()
            self.lock = None
            self._own_lock = False

    def _progress(self, trainer: L.Trainer, status: Status) -> StageRecord:
        """Where the run is, in the user's units: epochs counted from 1, steps = batches trained."""
        finished_run = status == "complete"
        epoch_done = (
            trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches
        )
        # after the last epoch Lightning has already advanced current_epoch
        completed = trainer.current_epoch if finished_run else trainer.current_epoch + int(epoch_done)
        return StageRecord(
            status=status,
            epoch=max(1, completed) if finished_run else trainer.current_epoch + 1,
            epochs_completed=completed,
            total_epochs=trainer.max_epochs or 0,
            steps=int(trainer.fit_loop.epoch_loop.batch_progress.total.processed),
        )

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule, status: Status) -> None:
        progress = self._progress(trainer, status)
        sections: dict[str, Section | None] = {}
        if trainer.is_global_zero:
            sections = {**self.extra_sections, **pl_module.model_file_sections(progress)}  # type: ignore[operator]
        drop = status == "complete" and not self.keep_checkpoint
        options = {"sections": sections, "drop_checkpoint": drop, "replace_damaged": self.replace_damaged}
        trainer.save_checkpoint(self.model_path, storage_options=options)
        self.extra_sections = {}  # written once; later writes copy them from the file
        self.replace_damaged = False  # only the first save replaces what was there
        self.last_saved = progress
        if self.listener is not None and trainer.is_global_zero:
            self.listener(
                ProgressEvent(
                    stage=self.stage,  # type: ignore[arg-type]
                    kind="checkpoint",
                    epoch=progress.epoch or 0,
                    epochs_done=progress.epochs_completed or 0,
                    total_epochs=progress.total_epochs or 0,
                    step=progress.steps or 0,
                    message=status,
                    path=str(self.model_path),
                )
            )

    @staticmethod
    def _epoch_finished(trainer: L.Trainer) -> bool:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return done >= trainer.num_training_batches

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # asked to stop (cancel): save this exact mid-epoch state at once. On an epoch's last
        # batch the epoch is let finish (its validation runs) and saved in on_train_epoch_end,
        # like any epoch-end checkpoint, so the resumed run repeats nothing and skips nothing.
        if trainer.should_stop and not self._stopped and not self._epoch_finished(trainer):
            self._stopped = True
            self.save(trainer, pl_module, "partial")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stopped:
            return
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        if last:
            return  # on_train_end writes the finished run
        if trainer.should_stop:
            self._stopped = True
            self.save(trainer, pl_module, "partial")
        elif (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer, pl_module, "partial")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed optimizer state comes from the (untrusted) file, and torch checks only the
        # parameter counts: moments of the wrong shape or type would fail a step later on.
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    for key, value in optimizer.state.get(param, {}).items():
                        fits = (
                            value.dim() == 0 or (value.shape == param.shape and value.is_floating_point())
                            if isinstance(value, torch.Tensor)
                            else isinstance(value, (int, float))
                        )
                        if not fits:
                            raise ModelFileError(
                                f"the optimizer state saved in {self.model_path} does not fit the network "
                                f"(its '{key}' for a {tuple(param.shape)} weight is not a matching tensor)"
                            )
        self.started = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._stopped:
            self.save(trainer, pl_module, "complete")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # a stop for a known reason (e.g. repeated non-finite losses) keeps what was trained
        if isinstance(exception, TrainingError) and not self._stopped:
            self._stopped = True
            self.save(trainer, pl_module, "partial")
        # Lightning skips teardown hooks after an exception: free the model for the next run
        self.teardown(trainer, pl_module, "fit")

    def state_dict(self) -> dict[str, Any]:
        return {"every_n_epochs": self.every_n_epochs}
