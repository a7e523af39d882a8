"""The checkpoint codec: nested training state (optimizer and scheduler state, RNG states,
histories) stored as JSON plus named tensors, so resuming never unpickles anything."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from distillgan.errors import ModelFileError
from distillgan.modelfile.schema import Section, _is_plain_numeric, _to_numpy, _torch

TREE_KEY = "tree"


def _encode(obj: Any, tensors: dict[str, Any], key: str) -> Any:
    torch = _torch()

    def stash(marker: str, value: Any) -> dict[str, str]:
        _to_numpy(value)  # refuse unstorable dtypes now, not at write time
        name = f"{key}/{len(tensors)}"
        tensors[name] = value
        return {marker: name}

    if isinstance(obj, np.generic) and _is_plain_numeric(obj.dtype):  # before float: np.float64 is one
        return stash("$npscalar", np.array(obj))
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        # a snapshot: training may go on changing the live tensor before the write
        return stash("$tensor", obj.detach().to("cpu", copy=True))
    if isinstance(obj, np.ndarray):
        return stash("$ndarray", obj.copy())
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, tensors, key) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors, key) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, tensors, key) for k, v in obj.items()}
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"cannot store a dict key of type {type(k).__name__}")
        # JSON objects only have text keys: keep int keys (and "$" keys) exact as pairs
        return {"$dict": [[k, _encode(v, tensors, key)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a model file")


def pack_tree(tree: Any, *, key: str = TREE_KEY) -> Section:
    """Store a nested structure: JSON in ``attrs[key]``, tensors and arrays as ``<key>/<n>`` datasets.

    Supports dict (str or int keys), list, tuple, None, bool, int, float (incl. inf/nan), str,
    torch tensors (any device; copied to cpu), numpy arrays and scalars. Tuples stay tuples, int
    keys stay ints, numpy stays numpy.
    """
    tensors: dict[str, Any] = {}
    return Section(attrs={key: _encode(tree, tensors, key)}, tensors=tensors)


def _decode(node: Any, tensors: Mapping[str, Any]) -> Any:
    torch = _torch()
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and next(iter(node)).startswith("$"):
        ((marker, value),) = node.items()
        if marker == "$tuple" and isinstance(value, list):
            return tuple(_decode(v, tensors) for v in value)
        if marker == "$dict" and isinstance(value, list):
            if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int)) for p in value):
                raise ModelFileError("the stored state is damaged (bad dict entry)")
            return {k: _decode(v, tensors) for k, v in value}
        if marker in ("$tensor", "$ndarray", "$npscalar") and isinstance(value, str):
            if value not in tensors:
                raise ModelFileError(f"the stored state is damaged (tensor '{value}' is missing)")
            stored = tensors[value]
            if marker == "$tensor":
                return stored if isinstance(stored, torch.Tensor) else torch.from_numpy(stored)
            array = stored if isinstance(stored, np.ndarray) else stored.cpu().numpy()
            return array if marker == "$ndarray" else array[()]
        raise ModelFileError(f"the stored state is damaged (unknown entry {marker!r})")
    if any(k.startswith("$") for k in node):
        raise ModelFileError("the stored state is damaged (unknown entry)")
    return {k: _decode(v, tensors) for k, v in node.items()}


def unpack_tree(section_attrs: Mapping[str, Any], tensors: Mapping[str, Any], *, key: str = TREE_KEY) -> Any:
    """Inverse of :func:`pack_tree`; ``tensors`` maps the ``<key>/<n>`` names to tensors or arrays."""
    if key not in section_attrs:
        raise ModelFileError(f"the stored state is damaged (no '{key}' entry)")
    try:
        return _decode(section_attrs[key], tensors)
    except RecursionError as exc:
        raise ModelFileError("the stored state is damaged (nested too deeply)") from exc
