"""The mel VAE network: shapes, seeded latent walks, and seamless decoding of any length."""

from __future__ import annotations

import pytest
import torch

from distillgan.networks.vae import (
    MelVAE,
    VAEModelConfig,
    decode_trajectory,
    frame_level,
    kl_divergence,
    latent_trajectory,
)


@pytest.fixture
def vae() -> MelVAE:
    torch.manual_seed(0)
    model = MelVAE(VAEModelConfig(latent_dim=4, channels=[16, 16], kernel_size=3)).eval()
    model.fit_to_corpus(torch.randn(128, 64) * 2.0 - 5.0)
    return model


def test_encode_decode_shapes(vae: MelVAE) -> None:
    mel = torch.randn(2, 128, 32)
    mu, logvar = vae.encode(mel)
    assert mu.shape == logvar.shape == (2, 4, 8)
    recon, mu2, _ = vae(mel)
    assert recon.shape == mel.shape and mu2.shape == mu.shape


def test_kl_is_zero_for_the_prior_and_positive_otherwise() -> None:
    zeros = torch.zeros(3, 4, 5)
    assert float(kl_divergence(zeros, zeros)) == 0.0
    assert float(kl_divergence(zeros + 1, zeros)) > 0.0


def test_latent_trajectory_is_seeded_smooth_and_unit_scale() -> None:
    a = latent_trajectory(8, 400, seed=3)
    assert torch.equal(a, latent_trajectory(8, 400, seed=3))
    assert not torch.equal(a, latent_trajectory(8, 400, seed=4))
    assert a.shape == (8, 400)
    assert 0.6 < float(a.std()) < 1.4  # the prior's scale, not shrunk by interpolation
    steps = (a[:, 1:] - a[:, :-1]).abs()
    # smooth: independent draws would differ by ~1.13 on average between neighbours
    assert float(steps.mean()) < 0.3 and float(steps.max()) < 1.0


@pytest.mark.parametrize("length", [1, 7, 64, 65, 200, 1000])
def test_decode_trajectory_gives_any_length(vae: MelVAE, length: int) -> None:
    z = latent_trajectory(4, length, seed=1)
    mel = decode_trajectory(vae, z, chunk=16, overlap=4)
    assert mel.shape == (128, length * vae.time_reduction)
    assert torch.isfinite(mel).all()


def test_chunked_decoding_has_no_seams(vae: MelVAE) -> None:
    """Frame-to-frame change at chunk joins is no larger than anywhere else."""
    z = latent_trajectory(4, 300, seed=2)
    single = decode_trajectory(vae, z, chunk=1000, overlap=4)
    chunked = decode_trajectory(vae, z, chunk=32, overlap=8)
    # away from the joins both agree; at the joins the crossfade blends two valid decodings
    jumps = (chunked[:, 1:] - chunked[:, :-1]).abs().mean(0)
    typical = (single[:, 1:] - single[:, :-1]).abs().mean(0)
    assert float(jumps.max()) < 1.5 * float(typical.max())
    assert float((chunked - single).abs().mean()) < 0.1 * float(single.std())


def test_decoded_mels_stay_within_the_corpus_bins_and_loudest_frame() -> None:
    torch.manual_seed(0)
    model = MelVAE(VAEModelConfig(latent_dim=4, channels=[16, 16], kernel_size=3)).eval()
    corpus = torch.randn(128, 400) * 2.0 - 5.0
    model.fit_to_corpus(corpus)
    # a walk far outside the prior makes the decoder extrapolate
    with torch.no_grad():
        model.to_mel.weight.mul_(50.0)
    z = latent_trajectory(4, 40, seed=1) * 10
    raw = model.decode(z[None])[0]
    mel = decode_trajectory(model, z, chunk=16, overlap=4)
    assert bool((raw > corpus.max(-1, keepdim=True).values + 1).any())  # the test has teeth
    assert bool((mel <= corpus.max(-1, keepdim=True).values + 1e-5).all())
    assert float(frame_level(mel).max()) <= float(frame_level(corpus).max()) + 1e-4


def test_a_frame_louder_than_the_corpus_is_lowered_whole_and_one_within_it_is_kept() -> None:
    model = MelVAE(VAEModelConfig(latent_dim=4, channels=[16], kernel_size=3))
    corpus = torch.full((128, 10), -8.0)
    corpus[:64, 2] = -2.0  # one frame loud in the low bins,
    corpus[64:, 5] = -2.0  # another in the high ones
    model.fit_to_corpus(corpus)
    quiet = corpus[:, :2] - 1.0
    assert torch.equal(model.limit_to_corpus(quiet), quiet)
    # every bin within its ceiling, but all at it at once: more energy than any corpus frame
    louder = torch.full((128, 2), -2.0)
    louder[:, 1] -= torch.linspace(0.0, 0.5, 128)
    limited = model.limit_to_corpus(louder)
    assert torch.allclose(frame_level(limited), frame_level(corpus[:, 2:3]).expand(2), atol=1e-5)
    shift = louder - limited
    assert torch.allclose(shift, shift[:1].expand_as(shift))  # each frame's spectral shape kept


def test_an_unfitted_vae_decodes_without_limits() -> None:
    model = MelVAE(VAEModelConfig(latent_dim=4, channels=[16], kernel_size=3))
    mel = torch.full((128, 4), 50.0)
    assert torch.equal(model.limit_to_corpus(mel), mel)
