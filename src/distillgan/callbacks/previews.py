"""Audio previews: the same held-out audio rendered every N epochs, so the user hears progress."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch

from distillgan.audio import write_audio
from distillgan.generation import finish_clip
from distillgan.mel import SAMPLE_RATE, log_mel_spectrogram
from distillgan.progress import ProgressEvent, ProgressListener

# The files of a preview folder; the UI reads them back by these names.
PREVIEW_RE = re.compile(r"^epoch-(\d+)_clip-(\d+)\.wav$")
REFERENCE_RE = re.compile(r"^reference_clip-(\d+)\.wav$")
ARCHIVE_PREFIX = "replaced-"  # subfolders holding the previews of a vocoder a fresh run replaced


def preview_name(epoch: int, clip: int) -> str:
    return f"epoch-{epoch:04d}_clip-{clip}.wav"


def reference_name(clip: int) -> str:
    return f"reference_clip-{clip}.wav"


def archive_previews(folder: Path) -> Path | None:
    """Move the previews and references in ``folder`` into a new ``replaced-<UTC time>``
    subfolder of it; returns that subfolder, or None when there was nothing to move.

    Moving, not deleting: the replaced vocoder is gone, and its previews are the only way left
    to hear what it did (TensorBoard's copies sit in logs that a user may clean up).
    """
    try:
        files = [p for p in folder.iterdir() if PREVIEW_RE.match(p.name) or REFERENCE_RE.match(p.name)]
    except FileNotFoundError:
        return None
    if not files:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    archive = folder / f"{ARCHIVE_PREFIX}{stamp}"
    n = 1
    while archive.exists():  # two fresh runs in one second
        n += 1
        archive = folder / f"{ARCHIVE_PREFIX}{stamp}-{n}"
    archive.mkdir()
    for path in files:
        path.rename(archive / path.name)
    return archive


@torch.no_grad()
def render(pl_module: L.LightningModule, clips: list[torch.Tensor]) -> list[torch.Tensor]:
    """The module's generator's rendering of each clip's mel, on CPU (one clip at a time: the
    clips may differ in length)."""
    generator: Any = pl_module.generator
    dtype = next(generator.parameters()).dtype  # float32, or bf16/float64 under "-true" precisions
    out = []
    for clip in clips:
        mel = log_mel_spectrogram(clip.to(pl_module.device)[None])
        out.append(generator(mel.to(dtype)).squeeze(1)[0].float().cpu())
    return out


class AudioPreviews(L.Callback):
    """Writes held-out audio as the vocoder renders it, every ``every_n_epochs`` epochs.

    Args:
        folder: where the WAVs go (distillgan uses ``<models dir>/runs/<model>/previews``, one
            folder per model): ``epoch-NNNN_clip-K.wav`` each time, and the originals once per
            run as ``reference_clip-K.wav`` for comparison.
        every_n_epochs: preview interval; the last epoch is always previewed.
        listener: receives a ``preview`` :class:`~distillgan.progress.ProgressEvent` per file.

    The clips are the DataModule's ``preview_audio`` (``val_audio`` when it has none): audio
    never trained on, the same every time, at least 2 s where the held-out audio allows (see
    :class:`~distillgan.lightning_modules.hifigan.VocoderDataModule`). When they are the
    validation clips, the audio is the module's ``last_validation_audio`` from that epoch's
    validation (no extra inference); otherwise the generator renders them after validation.
    With a TensorBoard logger the clips are logged as ``preview/clip-K`` (and the originals as
    ``reference/clip-K``). A fresh run (not a resumed one) first moves the folder's earlier
    previews, a replaced vocoder's, into a ``replaced-<time>`` subfolder. Rank zero only.
    """

    def __init__(
        self, folder: str | Path, *, every_n_epochs: int = 5, listener: ProgressListener | None = None
    ) -> None:
        self.folder = Path(folder)
        self.every_n_epochs = max(1, every_n_epochs)
        self.listener = listener
        self.written: list[Path] = []
        self.archived: Path | None = None
        self._references_written = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._references_written = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning has restored a resumed run's checkpoint by now: ckpt_path says which this is
        if trainer.ckpt_path is not None or not trainer.is_global_zero:
            return
        try:
            self.archived = archive_previews(self.folder)
        except OSError as exc:  # a side output: the run goes on; its files replace the old ones
            self._announce(trainer, 0, message=f"earlier previews not moved aside: {str(exc).strip()[:200]}")

    def _clips(self, trainer: L.Trainer) -> tuple[list[torch.Tensor], bool]:
        """The preview clips, and whether they are the validation clips."""
        datamodule = trainer.datamodule
        validation = list(getattr(datamodule, "val_audio", None) or [])
        clips = list(getattr(datamodule, "preview_audio", None) or validation)
        same = len(clips) == len(validation) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(clips, validation, strict=True)
        )
        return clips, same

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # None when this epoch did not validate (a run cancelled mid-epoch exits at once)
        validated: torch.Tensor | None = getattr(pl_module, "last_validation_audio", None)
        if trainer.sanity_checking or not trainer.is_global_zero or validated is None:
            return
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every_n_epochs != 0 and not last:
            return
        try:
            clips, same = self._clips(trainer)
            audio = list(validated) if same else render(pl_module, clips)
            self._write(trainer, clips, audio, epoch)
        except (OSError, RuntimeError) as exc:  # e.g. a full disk: soundfile raises RuntimeErrors
            # previews are a side output: training goes on (the next checkpoint write tells
            # the user if the disk is full), the listener says which preview is missing
            self._announce(
                trainer, epoch, message=f"preview of epoch {epoch} not written: {str(exc).strip()[:200]}"
            )

    def _write(
        self, trainer: L.Trainer, clips: list[torch.Tensor], audio: list[torch.Tensor], epoch: int
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        experiment: Any = getattr(trainer.logger, "experiment", None)
        logs_audio = experiment is not None and hasattr(experiment, "add_audio")
        if not self._references_written:
            for i, clip in enumerate(clips, start=1):
                clip = clip.float().cpu()
                write_audio(self.folder / reference_name(i), clip.numpy(), SAMPLE_RATE)
                if logs_audio:
                    experiment.add_audio(
                        f"reference/clip-{i}", clip[None], global_step=0, sample_rate=SAMPLE_RATE
                    )
            self._references_written = True
        for i, clip in enumerate(audio, start=1):
            path = self.folder / preview_name(epoch, i)
            # finished like a generated clip (DC-free, faded ends, within full scale); the
            # references stay as they are
            write_audio(path, finish_clip(clip.float().cpu().numpy()), SAMPLE_RATE)
            self.written.append(path)
            if logs_audio:
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
