"""Config machinery, torch-free: validated dataclasses from mappings, YAML reading and merging,
the built-in recipes' YAML, and the checks on values stored in a model file.

The recipes themselves are in :mod:`distillgan.recipes`, each network's shape beside its
network. The same validation guards configs read back from a model file, so a hostile or
hand-edited file with wrong types or out-of-range values is refused with one clear line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
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
