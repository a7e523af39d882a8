"""BigVGAN-v2's score on the run's held-out clips, so auto-selection compares like with like."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from distillgan.errors import VocoderUnavailableError
from distillgan.mel import log_mel_spectrogram

log = logging.getLogger(__name__)


class BigVGANScore(L.Callback):
    """At the end of a finished run, vocode the held-out clips with BigVGAN-v2 and give the
    module their held-out mel error (``bigvgan_val_mel_l1``, the same metric as ``val/mel_l1``).

    Only when BigVGAN is already on this machine (hub cache, ``bigvgan_dir`` or
    ``$DISTILLGAN_BIGVGAN_DIR``): training never downloads 490 MB. Rank zero only; a cancelled
    run skips it. Runs before :class:`~distillgan.callbacks.ModelFileCheckpoint` (Lightning
    calls checkpoint callbacks last), which writes the figure into the model file.
    """

    def __init__(self, bigvgan_dir: str | Path | None = None) -> None:
        self.bigvgan_dir = bigvgan_dir

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        # after the last epoch Lightning has advanced current_epoch to max_epochs; a cancel has not
        if not trainer.is_global_zero or trainer.current_epoch < (trainer.max_epochs or 0):
            return
        from distillgan.vocoders.bigvgan import load_bigvgan_vocoder
        from distillgan.vocoders.bigvgan_weights import locate_bigvgan_files

        try:
            locate_bigvgan_files(self.bigvgan_dir, allow_download=False)
            vocoder = load_bigvgan_vocoder(self.bigvgan_dir, device=pl_module.device)
        except VocoderUnavailableError as error:
            log.info("no BigVGAN-v2 score for this run: %s", error)
            return
        clips = trainer.datamodule.val_dataloader().clips
        with torch.no_grad():
            mel = log_mel_spectrogram(clips.float())
            audio = torch.stack([torch.from_numpy(vocoder.vocode(m.cpu())) for m in mel])
            pl_module.bigvgan_val_mel_l1 = float(F.l1_loss(log_mel_spectrogram(audio), mel.cpu()))
