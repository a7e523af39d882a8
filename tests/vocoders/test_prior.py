"""The shipped universal prior and ``train.init``: where a per-model vocoder starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from distillgan.errors import ConfigError
from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.modelfile import open_model
from distillgan.networks.hifigan import Generator, HiFiGANConfig
from distillgan.recipes import load_vocoder_config
from distillgan.vocoders.prior import (
    PRIOR_PATH,
    StartingWeights,
    export,
    read_starting_weights,
    starting_weights,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_shipped_prior_is_a_v2_generator_with_its_discriminators() -> None:
    start = read_starting_weights(PRIOR_PATH, "prior")
    assert start.generator_config == HiFiGANConfig(source_channels=4, discriminator_channel_divisor=8)
    assert start.discriminator_divisor == 8 and start.discriminators
    assert all(torch.isfinite(t).all() for t in start.generator.values())
    attrs = open_model(PRIOR_PATH).attrs("vocoder")
    assert attrs["steps"] > 0 and attrs["val_mel_l1_best"] is not None
    assert PRIOR_PATH.stat().st_size < 20e6
    assert (PRIOR_PATH.parent / "CARD.md").is_file()


def test_fine_tuning_starts_from_the_prior_generator_and_discriminators() -> None:
    cfg = load_vocoder_config(recipe="vocoder_quick")
    start = starting_weights("prior", Path("."))
    module = HiFiGANModule(cfg, start=start)
    assert module.started_from == "prior"
    folded = module.generator.inference_state_dict()
    for name, tensor in start.generator.items():
        torch.testing.assert_close(folded[name], tensor, rtol=1e-5, atol=1e-6)
    for name, tensor in module.discriminators.state_dict().items():
        assert torch.equal(tensor, start.discriminators[name]), name
    scratch = HiFiGANModule(cfg)
    assert scratch.started_from == "scratch"
    assert not torch.equal(scratch.generator.conv_post.bias, module.generator.conv_post.bias)


def test_a_vocoder_without_the_excitation_starts_a_run_with_it_as_it_was() -> None:
    # another model's (or an earlier prior's) generator from before the band-oscillator source
    cfg = load_vocoder_config(recipe="vocoder_tiny")
    plain_cfg = dataclasses.replace(cfg.generator, source_channels=0)
    plain = Generator(plain_cfg, weight_norm=False)
    start = StartingWeights("model old", plain_cfg, plain.state_dict(), None, None)
    module = HiFiGANModule(cfg, start=start)
    assert module.started_from == "model old" and len(module.generator.source_convs) == 4
    mel = torch.randn(1, 128, 8)
    with torch.no_grad():
        torch.testing.assert_close(module.generator(mel), plain(mel))


def test_discriminators_of_another_width_start_fresh() -> None:
    cfg = load_vocoder_config(recipe="vocoder")  # published widths: the prior's do not fit
    module = HiFiGANModule(cfg, start=starting_weights("prior", Path(".")))
    assert module.started_from == "prior"
    fresh = HiFiGANModule(cfg).discriminators.state_dict()
    assert all(v.shape == fresh[k].shape for k, v in module.discriminators.state_dict().items())


def test_a_generator_of_another_shape_cannot_start_from_the_prior() -> None:
    cfg = load_vocoder_config(recipe="vocoder_tiny")
    with pytest.raises(ConfigError, match="another shape"):
        HiFiGANModule(cfg, start=starting_weights("prior", Path(".")))


def test_export_writes_what_the_reader_loads(tmp_path: Path, tiny_corpus: Path) -> None:
    from tests.cli.test_train_vocoder import leave_vocoder

    run = tmp_path / "run.distillgan"
    leave_vocoder(run, tiny_corpus, keep=True)
    out = export(run, tmp_path / "prior.h5")
    start = read_starting_weights(out, "prior")
    module = HiFiGANModule(load_vocoder_config(recipe="vocoder_tiny"), start=start)
    stored = open_model(run).tree("vocoder_checkpoint")["state_dict"]
    for name, tensor in module.discriminators.state_dict().items():
        assert torch.equal(tensor, stored[f"discriminators.{name}"]), name
