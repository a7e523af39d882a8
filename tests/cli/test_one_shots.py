"""A folder of one-shots (drum hits, plucks) trains both stages: nothing is skipped for being short."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillgan.audio import write_audio
from distillgan.examples import synth_bell, synth_pluck
from distillgan.modelfile import open_model
from tests.cli.conftest import CliRun
from tests.robustness.harness import TINY_VAE, TINY_VOCODER, write_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def write_one_shots(folder: Path, count: int = 20) -> list[str]:
    """``count`` hits from 30 to 400 ms: decaying noise bursts (snares, hats), plucks and bells,
    some at 48 kHz."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i, ms in enumerate(np.linspace(30, 400, count).round().astype(int)):
        rate = 48_000 if i % 3 == 0 else 44_100
        seconds = ms / 1000
        if i % 3 == 1:
            t = np.arange(round(seconds * rate)) / rate
            hit = (np.clip(0.3 * rng.standard_normal(t.size), -1, 1) * np.exp(-t / (seconds / 4))).astype(
                np.float32
            )
        else:
            hit = (synth_pluck if i % 2 else synth_bell)(seconds, sr=rate, seed=i)
        name = f"hit {i + 1:02d} ({ms} ms).wav"
        write_audio(folder / name, hit, rate)
        names.append(name)
    return names


@pytest.mark.timeout(900)
def test_a_folder_of_one_shots_trains_both_stages_with_nothing_skipped(
    cli: CliRun, models_dir: Path, tmp_path: Path
) -> None:
    names = write_one_shots(tmp_path / "hits")
    vae_recipe = write_recipe(tmp_path / "vae.yaml", TINY_VAE)
    vae = cli(["train", "vae", str(tmp_path / "hits"), "--name", "hits", "--config", str(vae_recipe)])
    assert vae.exit_code == 0, vae.stderr
    assert "skipping" not in vae.stderr and "skipped" not in vae.stdout
    assert "Corpus: 20 files" in vae.stdout and "VAE training complete" in vae.stdout
    model = models_dir / "hits.distillgan"
    manifest = open_model(model).attrs("dataset")["manifest"]
    assert sorted(entry["path"] for entry in manifest["files"]) == names  # one entry per original file

    vocoder_recipe = write_recipe(tmp_path / "vocoder.yaml", TINY_VOCODER, preview_interval=100)
    vocoder = cli(["train", "vocoder", "hits", "--config", str(vocoder_recipe), "--epochs", "1"])
    assert vocoder.exit_code == 0, vocoder.stderr
    assert "skipping" not in vocoder.stderr and "Corpus: 20 files" in vocoder.stdout
    assert "Vocoder training complete" in vocoder.stdout
    assert open_model(model).attrs("vocoder")["status"] == "complete"
