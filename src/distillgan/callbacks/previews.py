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
    """Writes the held-out clips as the vocoder renders them, every ``every_n_epochs`` epochs.

    Args:
        folder: where the WAVs go (distillgan uses ``<models dir>/runs/<model>/previews``, one
            folder per model): ``epoch-NNNN_clip-K.wav`` each time, and the originals once per
            run as ``reference_clip-K.wav`` for comparison.
        every_n_epochs: preview interval; the last epoch is always previewed.
        listener: receives a ``preview`` :class:`~distillgan.progress.ProgressEvent` per file.

    The clips are the DataModule's ``val_audio`` (never trained on), the same every time;
    the audio is the module's ``last_validation_audio`` from that epoch's validation, so a
    preview costs no extra inference. With a TensorBoard logger the clips are logged as
    ``preview/clip-K`` (and the originals as ``reference/clip-K``). Rank zero only.
    """

    def __init__(
        self, folder: str | Path, *, every_n_epochs: int = 5, listener: ProgressListener | None = None
    ) -> None:
        self.folder = Path(folder)
        self.every_n_epochs = max(1, every_n_epochs)
        self.listener = listener
        self.written: list[Path] = []
        self._references_written = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._references_written = False

    def _write_references(self, trainer: L.Trainer, experiment: Any) -> None:
        clips = getattr(trainer.datamodule, "val_audio", None)
        for i, clip in enumerate(clips or [], start=1):
            clip = clip.float().cpu()
            write_audio(self.folder / f"reference_clip-{i}.wav", clip.numpy(), SAMPLE_RATE)
            if experiment is not None and hasattr(experiment, "add_audio"):
                experiment.add_audio(
                    f"reference/clip-{i}", clip[None], global_step=0, sample_rate=SAMPLE_RATE
                )
        self._references_written = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        audio: torch.Tensor | None = getattr(pl_module, "last_validation_audio", None)
        if trainer.sanity_checking or not trainer.is_global_zero or audio is None:
            return
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs != 0 and not last:
            return
        try:
            self._write(trainer, audio, epoch)
        except (OSError, RuntimeError) as exc:  # e.g. a full disk: soundfile raises RuntimeErrors
            # previews are a side output: training goes on (the next checkpoint write tells
            # the user if the disk is full), the listener says which preview is missing
            self._announce(
                trainer, epoch, message=f"preview of epoch {epoch} not written: {str(exc).strip()[:200]}"
            )

    def _write(self, trainer: L.Trainer, audio: torch.Tensor, epoch: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        experiment: Any = getattr(trainer.logger, "experiment", None)
        if not self._references_written:
            self._write_references(trainer, experiment)
        for i, clip in enumerate(audio, start=1):
            path = self.folder / f"epoch-{epoch:04d}_clip-{i}.wav"
            write_audio(path, clip.clamp(-1, 1).numpy(), SAMPLE_RATE)
            self.written.append(path)
            if experiment is not None and hasattr(experiment, "add_audio"):
                experiment.add_audio(
                    f"preview/clip-{i}", clip[None], global_step=epoch, sample_rate=SAMPLE_RATE
                )
            self._announce(trainer, epoch, path=str(path))

    def _announce(
        self, trainer: L.Trainer, epoch: int, *, path: str | None = None, message: str = ""
    ) -> None:
        """A ``preview`` event: ``path`` of the written WAV, or None and ``message`` saying why not."""
        if self.listener is not None:
            self.listener(
                ProgressEvent(
                    stage="vocoder",
                    kind="preview",
                    epoch=epoch,
                    total_epochs=trainer.max_epochs or 0,
                    path=path,
                    message=message,
                )
            )
