"""BigVGAN-v2 generator: config parsing, NVIDIA key layout, weight-norm folding, anti-aliasing, output."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
from torch import nn

from distillgan.errors import ConfigError
from distillgan.networks.bigvgan import (
    Activation1d,
    BigVGAN,
    BigVGANConfig,
    DownSample1d,
    UpSample1d,
    fold_weight_norm,
    kaiser_sinc_filter,
)

# NVIDIA's files were written with the old weight_norm API, so the tests use it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")


@pytest.fixture(autouse=True)
def one_thread_no_denormals() -> Iterator[None]:
    """Tiny random networks spend most of their time on denormal floats and thread hand-offs:
    one thread that flushes denormals runs these tests several times faster, same results."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)


# Same layout rules as the released model, a few thousand times cheaper: 3 stages of 8x.
TINY = BigVGANConfig(
    upsample_rates=(8, 8, 8),
    upsample_kernel_sizes=(16, 16, 16),
    upsample_initial_channel=32,
    resblock_kernel_sizes=(3, 7),
    resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
)

# The training keys NVIDIA's config.json also carries, which must be ignored.
NVIDIA_CONFIG = {
    "resblock": "1",
    "num_gpus": 0,
    "batch_size": 4,
    "learning_rate": 0.0001,
    "upsample_rates": [8, 4, 2, 2, 2, 2],
    "upsample_kernel_sizes": [16, 8, 4, 4, 4, 4],
    "upsample_initial_channel": 1536,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "use_tanh_at_final": False,
    "use_bias_at_final": False,
    "activation": "snakebeta",
    "snake_logscale": True,
    "use_cqtd_instead_of_mrd": True,
    "mpd_reshapes": [2, 3, 5, 7, 11],
    "segment_size": 65536,
    "num_mels": 128,
    "n_fft": 2048,
    "hop_size": 512,
    "win_size": 2048,
    "sampling_rate": 44100,
    "fmin": 0,
    "fmax": None,
}


def apply_nvidia_weight_norm(model: nn.Module, parametrized: bool = False) -> nn.Module:
    """Wrap every conv in weight norm, as NVIDIA's training code does, so state_dict() has its keys."""
    model = copy.deepcopy(model)
    norm = torch.nn.utils.parametrizations.weight_norm if parametrized else torch.nn.utils.weight_norm
    for module in list(model.modules()):
        if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
            norm(module)
    return model


def test_nvidia_config_parses_to_the_released_architecture() -> None:
    cfg = BigVGANConfig.from_dict(NVIDIA_CONFIG)
    assert cfg == BigVGANConfig()
    assert cfg.resblock_dilation_sizes == ((1, 3, 5),) * 3


def test_config_without_final_flags_takes_nvidia_legacy_defaults() -> None:
    data = {k: v for k, v in NVIDIA_CONFIG.items() if not k.startswith("use_")}
    cfg = BigVGANConfig.from_dict(data)
    assert cfg.use_tanh_at_final is True
    assert cfg.use_bias_at_final is True


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("num_mels", "128", "num_mels"),
        ("num_mels", True, "num_mels"),
        ("upsample_initial_channel", 1000, "divisible"),
        ("upsample_rates", [8, 4, 2, 2, 2, 4], "hop_size"),
        ("upsample_kernel_sizes", [15, 8, 4, 4, 4, 4], "even difference"),
        ("upsample_kernel_sizes", [16, 8, 4], "length"),
        ("resblock_kernel_sizes", [3, 6, 11], "odd"),
        ("resblock_dilation_sizes", [[1, 3, 5]], "one list per"),
        ("activation", "relu", "activation"),
        ("resblock", "2", "AMPBlock1"),
        ("snake_logscale", 1, "true or false"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        BigVGANConfig.from_dict({**NVIDIA_CONFIG, key: value})


def test_config_requires_architecture_keys() -> None:
    data = {k: v for k, v in NVIDIA_CONFIG.items() if k != "upsample_rates"}
    with pytest.raises(ConfigError, match="upsample_rates"):
        BigVGANConfig.from_dict(data)


def test_released_model_size_and_nvidia_key_names() -> None:
    with torch.device("meta"):
        model = BigVGAN()
    params = sum(p.numel() for p in model.parameters())
    # 122.15 M folded; NVIDIA's file adds one weight_g per conv output channel (~0.03 M).
    print(f"BigVGAN-v2 44k 512x parameters (weight norm folded): {params:,}")
    assert 121_000_000 < params < 123_000_000
    keys = set(model.state_dict())
    for key in [
        "conv_pre.weight",
        "ups.0.0.weight",
        "ups.5.0.bias",
        "resblocks.17.convs1.2.weight",
        "resblocks.17.convs2.2.bias",
        "resblocks.0.activations.5.act.alpha",
        "resblocks.0.activations.5.act.beta",
        "resblocks.0.activations.5.upsample.filter",
        "resblocks.0.activations.5.downsample.lowpass.filter",
        "activation_post.act.beta",
        "activation_post.downsample.lowpass.filter",
        "conv_post.weight",
    ]:
        assert key in keys
    assert "conv_post.bias" not in keys  # use_bias_at_final is false
    assert sum(key.endswith("act.alpha") for key in keys) == 18 * 6 + 1
    weight_normed = apply_nvidia_weight_norm(BigVGAN(TINY)).state_dict()
    assert "conv_pre.weight_g" in weight_normed and "ups.0.0.weight_v" in weight_normed


def test_kaiser_sinc_filter_is_a_symmetric_unit_gain_lowpass() -> None:
    taps = kaiser_sinc_filter(0.25, 0.3, 12).flatten()
    assert taps.shape == (12,)
    assert torch.allclose(taps.sum(), torch.tensor(1.0))
    assert torch.allclose(taps, taps.flip(0))
    response = torch.fft.rfft(taps, n=512).abs()
    assert response[0] == pytest.approx(1.0, abs=1e-5)
    # Well into the stopband (0.4 cycles/sample) almost nothing passes.
    assert response[int(0.4 * 512)] < 0.05


def test_resampling_keeps_length_and_low_frequencies() -> None:
    t = torch.arange(300.0)
    x = torch.sin(2 * math.pi * 0.02 * t).repeat(1, 3, 1)
    up = UpSample1d()(x)
    assert up.shape == (1, 3, 600)
    # The even-length filter centres output sample k at input time k/2 - 1/4; the downsampler's
    # asymmetric padding takes that quarter sample back out.
    expected = torch.sin(2 * math.pi * 0.02 * (torch.arange(600.0) / 2 - 0.25))
    assert torch.allclose(up[..., 40:-40], expected[40:-40], atol=1e-3)
    assert DownSample1d()(up).shape == x.shape
    roundtrip = Activation1d(nn.Identity())(x)
    assert torch.allclose(roundtrip[..., 20:-20], x[..., 20:-20], atol=1e-3)


def test_output_shape_range_and_finiteness() -> None:
    torch.manual_seed(0)
    model = BigVGAN(TINY).eval()
    mel = torch.randn(2, 128, 7)
    audio = model.synthesize(mel)
    assert audio.shape == (2, 1, 7 * 512)
    assert audio.dtype == torch.float32 and not audio.requires_grad
    assert torch.isfinite(audio).all()
    assert audio.abs().max() <= 1.0
    assert model.synthesize(mel[0]).shape == (1, 1, 7 * 512)


def test_output_is_clamped_not_squashed() -> None:
    model = BigVGAN(replace(TINY, use_bias_at_final=True)).eval()
    with torch.no_grad():
        model.conv_post.bias.fill_(5.0)
    audio = model.synthesize(torch.zeros(1, 128, 3))
    assert torch.equal(audio, torch.ones_like(audio))


def test_synthesize_rejects_a_mel_of_the_wrong_height() -> None:
    with pytest.raises(ValueError, match="128"):
        BigVGAN(TINY).synthesize(torch.zeros(1, 80, 4))


@pytest.mark.parametrize("parametrized", [False, True])
def test_weight_normed_state_dict_folds_to_the_same_network(parametrized: bool) -> None:
    torch.manual_seed(1)
    normed = apply_nvidia_weight_norm(BigVGAN(TINY), parametrized).eval()
    # Give the magnitudes values of their own so folding really has to combine g and v.
    with torch.no_grad():
        for name, tensor in normed.state_dict().items():
            if name.endswith(("weight_g", "original0")):
                tensor.mul_(torch.rand_like(tensor) + 0.5)
    state = normed.state_dict()
    assert any(k.endswith("weight_g" if not parametrized else "original0") for k in state)

    plain = BigVGAN(TINY).eval()
    plain.load_nvidia_state_dict(state)
    mel = torch.randn(1, 128, 5)
    with torch.no_grad():
        expected = normed(mel)
    assert torch.allclose(plain.synthesize(mel), expected, atol=1e-5)


def test_fold_weight_norm_leaves_plain_weights_alone() -> None:
    state = {"conv_pre.weight": torch.ones(2, 2, 1), "conv_pre.bias": torch.zeros(2)}
    assert fold_weight_norm(state) == state


def test_mismatched_state_dict_names_the_keys() -> None:
    state = BigVGAN(TINY).state_dict()
    state.pop("conv_post.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing keys \['conv_post.weight'\], 1 unexpected"):
        BigVGAN(TINY).load_nvidia_state_dict(state)
