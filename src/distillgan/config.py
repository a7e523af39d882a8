"""Training recipes as data: YAML files in ``configs/`` loaded into validated dataclasses.

The same validation guards configs read back from a model file, so a hostile or
hand-edited file with wrong types or out-of-range values is refused with one clear line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from distillgan.errors import ConfigError

T = TypeVar("T")


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _check_type(name, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{name}' has the wrong type ({type(value).__name__})")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"config key '{name}' must be empty")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{name}' must be a list")
        item_type = args[0] if args else Any
        items = [_check_type(f"{name}[{i}]", v, item_type) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"config key '{name}' must be a finite number")
            return value
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, prefix=f"{name}.")
    raise ConfigError(
        f"config key '{name}' must be {getattr(annotation, '__name__', annotation)}, got {value!r}"
    )


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types, then validate."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or cls.__name__}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'")
    values = {key: _check_type(prefix + key, value, hints[key]) for key, value in data.items()}
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def to_json(obj: Any) -> str:
    return json.dumps(to_dict(obj), sort_keys=True)


def from_json(cls: type[T], text: str) -> T:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"stored {cls.__name__} is not valid JSON") from exc
    return from_dict(cls, data)


def json_attr(value: Any) -> dict[str, Any]:
    """A JSON object stored as text in a model file (or already decoded); {} when it is not one."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            out = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to decode
            return {}
        return out if isinstance(out, dict) else {}
    return {}


def stored_count(value: Any) -> int | None:
    """A count stored in a model file (untrusted): a non-negative int, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def in_range(name: str, value: float, low: float, high: float) -> None:
    require(low <= value <= high, f"config key '{name}' must be between {low} and {high}, got {value}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: Path | str) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    return data


def builtin_recipe(name: str) -> dict[str, Any]:
    """A YAML recipe shipped in ``distillgan/configs`` (e.g. ``vae``, ``vocoder``, ``vocoder_quick``)."""
    import yaml

    text = resources.files("distillgan.configs").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


# ---------------------------------------------------------------------------------------------
# VAE stage


@dataclass
class VAEModelConfig:
    """Mel-spectrogram VAE network: 1-D convolutions over time with the 128 mel bins as channels."""

    latent_dim: int = 32
    channels: list[int] = field(default_factory=lambda: [256, 256, 512])
    # total temporal downsampling is 2 ** len(channels); chunks must be a multiple of it
    kernel_size: int = 5

    def validate(self) -> None:
        in_range("model.latent_dim", self.latent_dim, 1, 1024)
        require(1 <= len(self.channels) <= 6, "config key 'model.channels' must list 1 to 6 layers")
        for c in self.channels:
            in_range("model.channels[]", c, 1, 4096)
        in_range("model.kernel_size", self.kernel_size, 1, 31)
        require(self.kernel_size % 2 == 1, "config key 'model.kernel_size' must be odd")

    @property
    def time_reduction(self) -> int:
        return 2 ** len(self.channels)


@dataclass
class VAETrainConfig:
    chunk_frames: int = 64  # ~0.74 s of mel per training example
    batch_size: int = 16
    lr: float = 1e-3
    epochs: int = 0  # 0: adapt to corpus size (see distillgan.training.vae_epochs_for)
    kl_weight: float = 0.01
    kl_warmup_steps: int = 500
    validation_fraction: float = 0.15
    seed: int = 0
    precision: str = "32"
    accelerator: str = "auto"

    def validate(self) -> None:
        in_range("train.chunk_frames", self.chunk_frames, 8, 8192)
        in_range("train.batch_size", self.batch_size, 1, 4096)
        in_range("train.lr", self.lr, 1e-7, 1.0)
        in_range("train.epochs", self.epochs, 0, 100_000)
        in_range("train.kl_weight", self.kl_weight, 0.0, 100.0)
        in_range("train.kl_warmup_steps", self.kl_warmup_steps, 0, 10_000_000)
        in_range("train.validation_fraction", self.validation_fraction, 0.0, 0.5)


@dataclass
class VAEConfig:
    model: VAEModelConfig = field(default_factory=VAEModelConfig)
    train: VAETrainConfig = field(default_factory=VAETrainConfig)

    def validate(self) -> None:
        require(
            self.train.chunk_frames % self.model.time_reduction == 0,
            f"config key 'train.chunk_frames' must be a multiple of {self.model.time_reduction}",
        )


def load_vae_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> VAEConfig:
    data = builtin_recipe("vae")
    if path is not None:
        data = merge(data, load_yaml(path))
    if overrides:
        data = merge(data, overrides)
    return from_dict(VAEConfig, data)
