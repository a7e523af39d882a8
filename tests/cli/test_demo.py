"""`distillgan demo`: the whole product on the example corpus, and never at a user model's expense."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distillgan.modelfile import open_model
from tests.cli.conftest import CliRun, assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = ["--vae-epochs", "1", "--recipe", "vocoder_tiny", "--duration", "1.5", "--example-seconds", "1.0"]


def test_demo_trains_both_stages_and_generates_with_the_models_own_vocoder(
    cli: CliRun, models_dir: Path
) -> None:
    result = cli(["demo", *QUICK, "--seed", "3"])
    assert result.exit_code == 0, result.stdout + result.stderr
    out = result.stdout
    assert "VAE training complete" in out and "Vocoder training complete" in out
    assert "HiFi-GAN" in out and "BigVGAN" not in out  # auto picked the freshly trained vocoder

    model = models_dir / "demo.distillgan"
    reader = open_model(model)
    assert reader.attrs("vocoder")["status"] == "complete" and reader.has("vae")
    assert len(list((models_dir / "example-corpus").glob("*.wav"))) == 14

    clip = Path(re.search(r"^  clip +(\S+)$", out, re.M).group(1))
    audio, rate = sf.read(clip)
    assert rate == 44100 and abs(len(audio) / rate - 1.5) < 0.05
    assert np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0
    assert list(Path(re.search(r"^  previews +(\S+)$", out, re.M).group(1)).rglob("*.wav"))
    assert re.search(r"tensorboard --logdir \S+", out)

    again = cli(["demo", *QUICK, "--seed", "3"])  # the demo's own model is replaced
    assert again.exit_code == 0, again.stderr
    assert open_model(model).attrs("vocoder")["status"] == "complete"


def test_demo_never_replaces_a_users_model_of_the_same_name(
    cli: CliRun, vae_model: Path, models_dir: Path
) -> None:
    before = vae_model.read_bytes()
    result = cli(["demo", "--name", "tiny", *QUICK])
    assert_one_line_error(result, "the demo did not make", "--name")
    assert vae_model.read_bytes() == before
