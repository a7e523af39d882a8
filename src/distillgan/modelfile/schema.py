"""What a model file holds and how values are stored in it: the format mark and schema version,
valid stage names, :class:`Section` (one stage), and the plain numeric dtypes tensors are
written as (bfloat16, which numpy lacks, kept bit-exact as tagged uint16)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

SCHEMA_VERSION: int = 2
FORMAT = "distillgan"
# Attributes a schema version renamed, as (version, stage, old name, new name). Schema 2 gave the
# vocoder's completed-epoch count the name the VAE's summary uses. An older file's attributes are
# read under the new names, and its stages copied into a rewrite are renamed with it.
RENAMED_ATTRS = ((2, "vocoder", "epochs", "epochs_completed"),)

_BF16_ATTR = "torch_dtype"
_PLAIN_NUMERIC = frozenset(
    {("b", 1), ("f", 2), ("f", 4), ("f", 8)} | {(kind, size) for kind in "iu" for size in (1, 2, 4, 8)}
)
_SECTION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _torch() -> ModuleType:
    import torch

    return torch


@dataclass
class Section:
    """One top-level group: JSON-able attributes and named tensors."""

    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor | np.ndarray] = field(default_factory=dict)


def renamed_attrs(version: int, section: str) -> list[tuple[str, str]]:
    """(old name, new name) of ``section``'s attributes renamed since schema ``version``."""
    return [(old, new) for since, stage, old, new in RENAMED_ATTRS if version < since and stage == section]


def _is_plain_numeric(dtype: np.dtype) -> bool:
    return dtype.fields is None and dtype.subdtype is None and (dtype.kind, dtype.itemsize) in _PLAIN_NUMERIC


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _to_numpy(value: torch.Tensor | np.ndarray) -> tuple[np.ndarray, str | None]:
    """A native-order plain numeric array to store, plus a dtype tag when numpy lacks the dtype."""
    torch = _torch()
    tag = None
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise TypeError(f"cannot store a {value.layout} tensor; make it dense first")
        tensor = value.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: keep the exact bits as uint16
            tensor, tag = tensor.view(torch.uint16), "bfloat16"
        value = tensor.numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"cannot store a {type(value).__name__} as a tensor")
    if not _is_plain_numeric(value.dtype):
        raise TypeError(f"cannot store {value.dtype} data; only plain numbers are stored")
    return value.astype(value.dtype.newbyteorder("="), copy=False), tag
