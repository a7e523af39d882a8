"""Where a per-model vocoder starts: the shipped universal prior, another model's vocoder, or nothing.

The prior (``prior/hifigan_v2_prior.h5``, package data, see ``prior/CARD.md``) is a model file
like any other: ``/vocoder`` holds a HiFi-GAN V2 generator trained by ``scripts/prior/train.py``
on hours of rendered instruments, voices and textures, and ``/vocoder_discriminators`` the
reduced MPD + MSD trained with it, so fine-tuning does not open against untrained
discriminators. Another model's vocoder is read the same way (its generator only: a model file
keeps no discriminators outside its resumable training state).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from distillgan import config as cfg_lib
from distillgan.errors import ConfigError, ModelFileError
from distillgan.modelfile import (
    DiscriminatorsRecord,
    ModelLock,
    Section,
    discriminators_record,
    open_model,
    vocoder_record,
    write_model,
)
from distillgan.modelfile.records import DISCRIMINATORS, VOCODER
from distillgan.networks.hifigan import Discriminators, Generator, HiFiGANConfig, generator_shapes
from distillgan.vocoders.hifigan import stored_config

PRIOR_PATH = Path(__file__).parent / "prior" / "hifigan_v2_prior.h5"
INIT_CHOICES = ("prior", "scratch")  # or a model's name or path


@dataclass(frozen=True)
class StartingWeights:
    """A generator (folded inference weights) and, when known, discriminators to fine-tune from."""

    source: str  # what the model file records: "prior", or "model <name>"
    generator_config: HiFiGANConfig
    generator: dict[str, torch.Tensor]
    discriminators: dict[str, torch.Tensor] | None  # Discriminators.state_dict() of ...
    discriminator_divisor: int | None  # ... this width


def read_starting_weights(path: Path, source: str) -> StartingWeights:
    """The generator in ``path``'s ``/vocoder``, and its discriminators where the file has them."""
    reader = open_model(path)
    if not reader.has(VOCODER):
        raise ModelFileError(f"{path} has no vocoder to start from")
    cfg = stored_config(vocoder_record(reader).config, path)
    # stored shapes are checked against the ones the configs imply before anything is built
    generator = reader.tensors(VOCODER, generator_shapes(cfg), prefix="generator")
    discriminators, divisor = None, None
    if reader.has(DISCRIMINATORS):
        divisor = discriminators_record(reader).discriminator_channel_divisor
        discriminators = reader.tensors(DISCRIMINATORS, _discriminator_shapes(cfg, divisor, path))
    return StartingWeights(source, cfg, generator, discriminators, divisor)


def _discriminator_shapes(cfg: HiFiGANConfig, divisor: int | None, where: Path) -> dict[str, tuple[int, ...]]:
    """The discriminators' weight shapes for ``cfg`` at the stored width, laid out on the meta device."""
    d_cfg = stored_config({**cfg_lib.to_dict(cfg), "discriminator_channel_divisor": divisor}, where)
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in Discriminators(d_cfg).state_dict().items()}


def starting_weights(init: str, models_dir: Path, *, exclude: Path | None = None) -> StartingWeights | None:
    """What ``train.init`` names: the shipped prior, nothing (scratch), or a model's vocoder."""
    from distillgan.modelfile import resolve_model

    if init == "scratch":
        return None
    if init == "prior":
        if not PRIOR_PATH.exists():
            raise ModelFileError(f"the vocoder prior is missing from this installation ({PRIOR_PATH})")
        return read_starting_weights(PRIOR_PATH, "prior")
    path = resolve_model(init, models_dir)
    if exclude is not None and path.resolve() == exclude.resolve():
        raise ConfigError("a vocoder cannot start from the model's own vocoder: use prior or scratch")
    return read_starting_weights(path, f"model {path.stem}")


def weight_normed(folded: dict[str, torch.Tensor], cfg: HiFiGANConfig) -> dict[str, torch.Tensor]:
    """Folded generator weights as a weight-normed training ``Generator``'s state (g = |w|, v = w)."""
    plain = Generator(cfg, weight_norm=False)
    plain.load_state_dict(folded, strict=True)
    plain.apply_weight_norm()
    return plain.state_dict()


def export(run: Path, out: Path = PRIOR_PATH) -> Path:
    """Write the prior package file from a prior training run's model file: its kept (held-out
    best) generator and the discriminators of its latest training state."""
    reader = open_model(run)
    record = vocoder_record(reader)
    cfg = stored_config(record.config, run)
    generator = reader.tensors(VOCODER, generator_shapes(cfg), prefix="generator")
    state = reader.tree("vocoder_checkpoint")["state_dict"]
    prefix = "discriminators."
    discriminators = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    sections = {
        VOCODER: Section(
            # the prior is a finished vocoder, trained from scratch (in sittings)
            attrs=dataclasses.replace(record, status="complete", started_from="scratch").to_attrs(),
            tensors={f"generator/{k}": v.float() for k, v in generator.items()},
        ),
        DISCRIMINATORS: Section(
            attrs=DiscriminatorsRecord(cfg.discriminator_channel_divisor).to_attrs(),
            tensors={k: v.float() for k, v in discriminators.items()},
        ),
    }
    with ModelLock(out, owner="distillgan prior export") as lock:
        write_model(out, sections, lock=lock, create=True)
    out.with_name(f"{out.name}.lock").unlink(missing_ok=True)  # package data: no lock file beside it
    return out
