"""HiFi-GAN V2 generator, discriminators and losses (fast, CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distillgan.config import from_dict
from distillgan.errors import ConfigError
from distillgan.mel import HOP_LENGTH, N_MELS
from distillgan.networks.hifigan import (
    LRELU_SLOPE,
    Discriminators,
    Generator,
    HiFiGANConfig,
    PeriodDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    generator_shapes,
)

# tiny discriminators keep the tests fast; the default widths are checked by construction only
TINY = HiFiGANConfig(discriminator_channel_divisor=16)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# config


def test_default_config_round_trips_through_from_dict() -> None:
    cfg = from_dict(HiFiGANConfig, {"upsample_rates": [8, 8, 4, 2], "resblock_dilations": [[1, 3, 5]] * 3})
    assert cfg == HiFiGANConfig()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"upsample_rates": [8, 8, 4, 4], "upsample_kernel_sizes": [16, 16, 8, 8]}, "multiply to"),
        ({"upsample_rates": [8, 8, 8]}, "one entry per upsample rate"),
        ({"n_mels": 80}, "n_mels"),
        ({"upsample_kernel_sizes": [16, 16, 8, 3]}, "upsample_kernel_sizes"),
        ({"resblock_kernel_sizes": [3, 8, 11]}, "odd"),
        ({"resblock_dilations": [[1, 3, 5]]}, "one list per"),
        ({"discriminator_channel_divisor": 3}, "discriminator_channel_divisor"),
        ({"discriminator_channel_divisor": 0}, "discriminator_channel_divisor"),
        ({"upsample_initial_channel": 24}, "divisible by 16"),
        ({"mpd_periods": "2,3"}, "mpd_periods"),
        ({"upsample_rates": [8.0, 8, 4, 2]}, "upsample_rates"),
        ({"mpd_period": [2]}, "unknown config key"),
        # a stored config must not ask the loader for gigabytes (4096 channels, kernels of 1024: 48 GB)
        ({"upsample_initial_channel": 4096}, "upsample_initial_channel"),
        ({"upsample_kernel_sizes": [1024, 1024, 1024, 1024]}, "upsample_kernel_sizes"),
        ({"resblock_kernel_sizes": [63, 7, 11]}, "resblock_kernel_sizes"),
        (
            {
                "upsample_initial_channel": 1024,
                "resblock_kernel_sizes": [31] * 8,
                "resblock_dilations": [[1] * 8] * 8,
            },
            "parameters",
        ),
    ],
)
def test_config_refuses_bad_values(override: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        from_dict(HiFiGANConfig, override)


@pytest.mark.parametrize(
    "cfg",
    [
        HiFiGANConfig(),
        HiFiGANConfig(upsample_initial_channel=512),  # HiFi-GAN V1's width
        HiFiGANConfig(upsample_initial_channel=1024),  # the widest allowed
        HiFiGANConfig(
            upsample_initial_channel=64,
            upsample_rates=[32, 16],
            upsample_kernel_sizes=[64, 32],
            resblock_kernel_sizes=[31, 3],
            resblock_dilations=[[1, 2, 4, 8, 16, 32, 64, 1], [1]],
        ),
    ],
)
def test_parameter_count_is_the_generators_without_building_it(cfg: HiFiGANConfig) -> None:
    with torch.device("meta"):
        built = _count(Generator(cfg, weight_norm=False))
    assert cfg.parameter_count() == built


def test_generator_shapes_are_the_inference_weights_shapes() -> None:
    plain = Generator(HiFiGANConfig(), weight_norm=False)
    assert generator_shapes(HiFiGANConfig()) == {k: tuple(v.shape) for k, v in plain.state_dict().items()}


def test_networks_validate_a_config_built_directly() -> None:
    with pytest.raises(ConfigError, match="multiply to"):
        Generator(HiFiGANConfig(upsample_rates=[8, 8, 4, 1], upsample_kernel_sizes=[16, 16, 8, 1]))


# ---------------------------------------------------------------------------------------------
# generator


def test_generator_output_is_512_samples_per_frame_in_unit_range() -> None:
    gen = Generator(HiFiGANConfig())
    mel = torch.randn(2, N_MELS, 7)
    audio = gen(mel)
    assert audio.shape == (2, 1, 7 * HOP_LENGTH)
    assert audio.dtype == torch.float32
    assert audio.abs().max() <= 1.0


def test_other_upsampling_schedule_keeps_the_hop() -> None:
    cfg = HiFiGANConfig(
        upsample_rates=[8, 8, 8], upsample_kernel_sizes=[16, 16, 16], upsample_initial_channel=64
    )
    assert Generator(cfg)(torch.randn(1, N_MELS, 3)).shape == (1, 1, 3 * HOP_LENGTH)


def test_default_generator_is_hifigan_v2_sized() -> None:
    gen = Generator(HiFiGANConfig())
    n_train = _count(gen)
    n_infer = _count(Generator(HiFiGANConfig(), weight_norm=False))
    print(f"HiFi-GAN V2 generator: {n_train} parameters in training, {n_infer} folded")
    # V2 is ~0.9M parameters; weight norm adds one gain per output channel
    assert 0.85e6 < n_infer < 1.05e6
    assert n_infer < n_train < n_infer + 5_000


def test_weight_norm_folding_preserves_the_output() -> None:
    cfg = HiFiGANConfig()
    gen = Generator(cfg).eval()
    mel = torch.randn(1, N_MELS, 5)
    with torch.no_grad():
        expected = gen(mel)
        folded_state = gen.inference_state_dict()
        # inference_state_dict does not touch the training generator
        assert any(".parametrizations." in key for key in gen.state_dict())

        plain = Generator(cfg, weight_norm=False).eval()
        assert list(folded_state) == list(plain.state_dict())
        assert all(".parametrizations." not in key for key in folded_state)
        plain.load_state_dict(folded_state)
        torch.testing.assert_close(plain(mel), expected, atol=1e-6, rtol=0)

        gen.remove_weight_norm()
        assert set(gen.state_dict()) == set(folded_state)
        torch.testing.assert_close(gen(mel), expected, atol=1e-6, rtol=0)
        for key, value in gen.state_dict().items():
            torch.testing.assert_close(value, folded_state[key], atol=1e-7, rtol=0)


def test_gradients_flow_from_the_adversarial_loss_to_every_generator_weight() -> None:
    gen = Generator(TINY)
    disc = Discriminators(TINY)
    fake = gen(torch.randn(2, N_MELS, 8))
    logits, _ = disc(fake)
    generator_adversarial_loss(logits).backward()
    for name, param in gen.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert gen.conv_pre.parametrizations.weight.original1.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# discriminators


def test_discriminators_return_five_period_and_three_scale_outputs() -> None:
    disc = Discriminators(TINY)
    audio = torch.randn(3, 1, 4000)  # not a multiple of any period: reflect padding kicks in
    logits, features = disc(audio)
    assert len(logits) == len(features) == 5 + 3
    # MPD: 5 convs + post conv; MSD: 7 convs + post conv; the post conv output is a feature too
    assert [len(maps) for maps in features] == [6] * 5 + [8] * 3
    for logit, maps in zip(logits, features, strict=True):
        assert logit.dim() == 2
        assert logit.shape[0] == 3
        assert all(m.shape[0] == 3 for m in maps)
        torch.testing.assert_close(logit, maps[-1].flatten(1))


# HiFi-GAN's DiscriminatorS (jik876/hifi-gan models.py): (in, out, kernel, stride, groups, padding)
PUBLISHED_MSD = [
    (1, 128, 15, 1, 1, 7),
    (128, 128, 41, 2, 4, 20),
    (128, 256, 41, 2, 16, 20),
    (256, 512, 41, 4, 16, 20),
    (512, 1024, 41, 4, 16, 20),
    (1024, 1024, 41, 1, 16, 20),
    (1024, 1024, 5, 1, 1, 2),
    (1024, 1, 3, 1, 1, 1),  # post
]


def test_msd_is_hifigans_own_published_network() -> None:
    msd = Discriminators(HiFiGANConfig()).msd
    for scale in msd.discriminators:
        layers = [
            (c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.groups, c.padding[0])
            for c in [*scale.convs, scale.conv_post]
        ]
        assert layers == PUBLISHED_MSD
    # conv weights and biases of the three scales: 29.6 M as published (norms' own parameters aside)
    weights = sum(
        c.weight.numel() + c.bias.numel()
        for scale in msd.discriminators
        for c in [*scale.convs, scale.conv_post]
    )
    published = 3 * sum(i * o // g * k + o for i, o, k, _, g, _ in PUBLISHED_MSD)
    assert weights == published == 29_610_627
    # each scale reduces time 64x (strides 2, 2, 4, 4) after the pooling of the one before
    logits, _ = msd(torch.randn(1, 1, 8192))
    assert [x.shape[-1] for x in logits] == [128, 65, 33]


def _paper_period_discriminator(d: PeriodDiscriminator, y: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The paper's formulation: fold to (B, 1, T/p, p) and run 2-D convs with (k, 1) kernels."""
    b, c, t = y.shape
    if t % d.period:
        y = F.pad(y, (0, d.period - t % d.period), mode="reflect")
    x = y.view(b, c, -1, d.period)
    features = []
    for conv in [*d.convs, d.conv_post]:
        x = F.conv2d(x, conv.weight[..., None], conv.bias, (conv.stride[0], 1), (conv.padding[0], 0))
        if conv is not d.conv_post:
            x = F.leaky_relu(x, LRELU_SLOPE)
        features.append(x)
    return x.flatten(1), features


@pytest.mark.parametrize("period", [2, 3, 11])
def test_period_discriminator_equals_the_papers_2d_formulation(period: int) -> None:
    d = PeriodDiscriminator(period, channel_divisor=16)
    y = torch.randn(2, 1, 3001)
    with torch.no_grad():
        logits, features = d(y)
        ref_logits, ref_features = _paper_period_discriminator(d, y)
    # same values per example; the feature layout is (B, p, C, T/p) instead of (B, C, T/p, p)
    torch.testing.assert_close(logits.sort().values, ref_logits.sort().values, rtol=1e-5, atol=1e-6)
    for ours, ref in zip(features, ref_features, strict=True):
        torch.testing.assert_close(ours, ref.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("divisor", [1, 2, 4, 8, 16])
def test_every_allowed_channel_divisor_builds(divisor: int) -> None:
    disc = Discriminators(HiFiGANConfig(discriminator_channel_divisor=divisor))
    widths = [
        disc.mpd.discriminators[0].convs[-1].out_channels,
        disc.msd.discriminators[0].convs[-1].out_channels,
    ]
    assert widths == [1024 // divisor, 1024 // divisor]
    if divisor >= 8:
        logits, _ = disc(torch.randn(1, 1, 2048))
        assert len(logits) == 8


def test_first_scale_uses_spectral_norm_others_weight_norm() -> None:
    disc = Discriminators(TINY)
    kinds = [type(d.convs[0].parametrizations.weight[0]).__name__ for d in disc.msd.discriminators]
    assert kinds == ["_SpectralNorm", "_WeightNorm", "_WeightNorm"]


def test_discriminators_under_bf16_autocast_give_finite_float32_losses() -> None:
    gen = Generator(TINY)
    disc = Discriminators(TINY)
    real = torch.rand(2, 1, 4 * HOP_LENGTH) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = gen(torch.randn(2, N_MELS, 4))
        real_logits, real_features = disc(real)
        fake_logits, fake_features = disc(fake)
        assert fake_logits[0].dtype == torch.bfloat16  # the convolutions really ran in bf16
        losses = [
            discriminator_loss(real_logits, fake_logits),
            generator_adversarial_loss(fake_logits),
            feature_matching_loss(real_features, fake_features),
        ]
    for loss in losses:
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
    sum(losses).backward()
    assert all(torch.isfinite(p.grad).all() for p in disc.parameters() if p.grad is not None)
    # spectral norm's power-iteration vectors stay float32
    first = disc.msd.discriminators[0].convs[0].parametrizations.weight[0]
    assert first._u.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# losses


def test_lsgan_losses_at_their_optima() -> None:
    ones = [torch.ones(2, 5), torch.ones(2, 3)]
    zeros = [torch.zeros(2, 5), torch.zeros(2, 3)]
    assert discriminator_loss(ones, zeros).item() == 0.0
    assert generator_adversarial_loss(ones).item() == 0.0
    # the worst case for each: D swaps real and fake -> 1 + 1 per sub-discriminator
    assert discriminator_loss(zeros, ones).item() == pytest.approx(4.0)
    assert generator_adversarial_loss(zeros).item() == pytest.approx(2.0)


def test_losses_are_float32_from_bf16_inputs() -> None:
    logits = [torch.full((2, 4), 0.5, dtype=torch.bfloat16)]
    assert discriminator_loss(logits, logits).dtype == torch.float32
    assert generator_adversarial_loss(logits).dtype == torch.float32
    features = [[torch.zeros(2, 3, dtype=torch.bfloat16), torch.ones(2, 1, dtype=torch.bfloat16)]]
    assert feature_matching_loss(features, features).dtype == torch.float32


def test_feature_matching_is_the_plain_sum_of_layer_l1_means() -> None:
    real = [[torch.zeros(2, 3), torch.zeros(4)], [torch.zeros(1, 5)]]
    fake = [[torch.full((2, 3), 0.5), torch.full((4,), -1.0)], [torch.full((1, 5), 2.0)]]
    # no ×2 inside: the caller applies FEATURE_MATCHING_WEIGHT
    assert feature_matching_loss(real, fake).item() == pytest.approx(0.5 + 1.0 + 2.0)
    assert feature_matching_loss(real, real).item() == 0.0


def test_feature_matching_sends_no_gradient_through_real_features() -> None:
    real = torch.randn(2, 3, requires_grad=True)
    fake = torch.randn(2, 3, requires_grad=True)
    feature_matching_loss([[real]], [[fake]]).backward()
    assert real.grad is None
    assert fake.grad is not None
