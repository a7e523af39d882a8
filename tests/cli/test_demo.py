"""`distillgan demo`: the whole product on the example corpus, and never at a user model's expense."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distillgan.generation import AUTO_FALLBACK_REASON
from distillgan.modelfile import dataset_record, open_model
from tests.cli.conftest import CliRun, assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--vae-epochs", "1", "--recipe", "vocoder_tiny", "--duration", "1.5", "--example-seconds", "1.0"]


def _earlier_demo_model(models_dir: Path) -> Path:
    """``demo.distillgan`` as an earlier demo left it: a (tiny) VAE of the example corpus."""
    from distillgan.lightning_modules.vae import VAEModule
    from distillgan.modelfile import DatasetRecord, ModelLock, Section, StageRecord, write_model
    from distillgan.recipes import load_vae_config

    cfg = load_vae_config(None, {"model": {"latent_dim": 4, "channels": [16, 16]}, "train": {"epochs": 1}})
    progress = StageRecord(status="complete", epoch=1, epochs_completed=1, total_epochs=1, steps=1)
    sections = VAEModule(cfg).model_file_sections(progress)
    manifest = {"root": str((models_dir / "example-corpus").absolute()), "files": []}
    sections["dataset"] = Section(attrs=DatasetRecord(manifest).to_attrs())
    path = models_dir / "demo.distillgan"
    with ModelLock(path, owner="test") as lock:
        write_model(path, sections, lock=lock, create=True)
    return path


def test_demo_trains_both_stages_and_generates_with_the_models_own_vocoder(
    cli: CliRun, models_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DISTILLGAN_BIGVGAN_DIR", raising=False)
    model = _earlier_demo_model(models_dir)  # the demo's own model is replaced
    result = cli(["demo", *QUICK, "--seed", "3"])
    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    assert "VAE training complete" in out and "Vocoder training complete" in out
    # the tiny recipe's vocoder is poor, so auto wants BigVGAN-v2, which is not to be had here:
    # generation renders with the model's own vocoder, and its badge says why and warns
    assert f"Per-model HiFi-GAN V2 — {AUTO_FALLBACK_REASON}" in out
    assert "BigVGAN-v2 is unavailable" in out and "quality may be limited" in out

    reader = open_model(model)
    assert reader.attrs("vocoder")["status"] == "complete" and reader.has("vae")
    assert len(list((models_dir / "example-corpus").glob("*.wav"))) == 14
    assert len(dataset_record(reader).manifest["files"]) == 14  # the new model's, not the earlier one's

    clip = Path(re.search(r"^  clip +(\S+)$", out, re.M).group(1))
    audio, rate = sf.read(clip)
    assert rate == 44100 and abs(len(audio) / rate - 1.5) < 0.05
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0
    assert list(Path(re.search(r"^  previews +(\S+)$", out, re.M).group(1)).rglob("*.wav"))
    assert re.search(r"tensorboard --logdir \S+", out)


def test_demo_never_replaces_a_users_model_of_the_same_name(
    cli: CliRun, vae_model: Path, models_dir: Path
) -> None:
    before = vae_model.read_bytes()
    result = cli(["demo", "--name", "tiny", *QUICK])
    assert_one_line_error(result, "the demo did not make", "--name")
    assert vae_model.read_bytes() == before
