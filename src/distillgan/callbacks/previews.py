"""Audio previews: the same held-out clips rendered every N epochs, so the user hears progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from distillgan.audio import write_audio
from distillgan.mel import SAMPLE_RATE
from distillgan.progress import ProgressEvent, ProgressListener


class AudioPreviews(L.Callback):
    """Writes ``epoch-NNNN_clip-K.wav`` (and the originals as ``reference_clip-K.wav``) to
    ``folder``, logs them to TensorBoard, and tells the listener.

    Reads ``pl_module.last_validation_audio`` (clips, samples), which the vocoder module
    fills in each validation pass, so previews cost no extra inference.
    """

    def __init__(
        self, folder: str | Path, *, every_n_epochs: int = 5, listener: ProgressListener | None = None
    ) -> None:
        self.folder = Path(folder)
        self.every_n_epochs = max(1, every_n_epochs)
        self.listener = listener
        self.written: list[Path] = []

    def _write_references(self, trainer: L.Trainer) -> None:
        clips = getattr(trainer.datamodule, "val_audio", None)
        if not clips:
            return
        for i, clip in enumerate(clips, start=1):
            path = self.folder / f"reference_clip-{i}.wav"
            if not path.exists():
                write_audio(path, clip.float().cpu().numpy(), SAMPLE_RATE)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        audio: torch.Tensor | None = getattr(pl_module, "last_validation_audio", None)
        if trainer.sanity_checking or not trainer.is_global_zero or audio is None:
            return
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs != 0 and not last:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_references(trainer)
        experiment: Any = getattr(trainer.logger, "experiment", None)
        for i, clip in enumerate(audio, start=1):
            path = self.folder / f"epoch-{epoch:04d}_clip-{i}.wav"
            write_audio(path, clip.clamp(-1, 1).numpy(), SAMPLE_RATE)
            self.written.append(path)
            if experiment is not None and hasattr(experiment, "add_audio"):
                experiment.add_audio(
                    f"preview/clip-{i}", clip[None], global_step=epoch, sample_rate=SAMPLE_RATE
                )
            if self.listener is not None:
                self.listener(
                    ProgressEvent(
                        stage="vocoder",
                        kind="preview",
                        epoch=epoch,
                        total_epochs=trainer.max_epochs or 0,
                        path=str(path),
                    )
                )
