"""BigVGANScore: BigVGAN-v2's held-out mel error beside the per-model vocoder's, in the model file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from distillgan.modelfile import open_model
from distillgan.vocoders import bigvgan_weights
from distillgan.vocoders.bigvgan_weights import LOCAL_DIR_ENV
from distillgan.vocoders.hifigan import read_vocoder_info
from tests.training_runs import train_tiny_vocoder
from tests.vocoders.model_files import nvidia_files, write_folder

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
]


@pytest.fixture(autouse=True)
def no_bigvgan_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(LOCAL_DIR_ENV, raising=False)
    bigvgan_weights._load_cached.cache_clear()


def test_a_finished_run_stores_bigvgans_score_on_its_held_out_clips(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    folder = write_folder(tmp_path / "bigvgan", nvidia_files())
    path = tmp_path / "scored.distillgan"
    train_tiny_vocoder(path, tiny_corpus, bigvgan_dir=folder)
    attrs = open_model(path).attrs("vocoder")
    assert math.isfinite(attrs["bigvgan_val_mel_l1"]) and attrs["bigvgan_val_mel_l1"] > 0
    info = read_vocoder_info(path)
    assert info.bigvgan_val_mel_l1 == attrs["bigvgan_val_mel_l1"]
    assert info.ready == (info.val_mel_l1 < info.bigvgan_val_mel_l1)


def test_no_score_without_bigvgan_on_this_machine_or_after_a_cancel(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    absent = tmp_path / "absent.distillgan"
    train_tiny_vocoder(absent, tiny_corpus)  # nothing cached, hub offline: training never downloads
    assert open_model(absent).attrs("vocoder")["bigvgan_val_mel_l1"] is None

    folder = write_folder(tmp_path / "bigvgan", nvidia_files())
    cancelled = tmp_path / "cancelled.distillgan"
    train_tiny_vocoder(cancelled, tiny_corpus, bigvgan_dir=folder, cancel_after=3)
    assert open_model(cancelled).attrs("vocoder")["bigvgan_val_mel_l1"] is None
