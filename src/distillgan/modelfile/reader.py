"""The reader: model files are untrusted input.

A file is opened only inside each call. Links, dtypes, shapes, sizes and storage of every
dataset are checked before any data is read, and every library error becomes a
:class:`ModelFileError` with one clear line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from distillgan.errors import DamagedModelFileError, ModelFileError
from distillgan.modelfile.paths import _label
from distillgan.modelfile.schema import (
    _BF16_ATTR,
    _SECTION_RE,
    FORMAT,
    SCHEMA_VERSION,
    _is_plain_numeric,
    _torch,
    renamed_attrs,
)
from distillgan.modelfile.tree import TREE_KEY, unpack_tree

if TYPE_CHECKING:
    import torch

# Limits for untrusted files, far above real models: a full vocoder checkpoint (generator,
# discriminators, two Adam optimizers) is under 1 GiB. Applied per read call.
MAX_READ_BYTES = 2 * 1024**3
MAX_OBJECTS = 100_000
MAX_DEPTH = 32
MAX_ATTRS = 10_000

# deflate cannot compress better than about 1032:1, so more declared bytes than this means
# the dataset would be filled from nothing (unwritten chunks) -- a memory bomb, not weights.
_DEFLATE_MAX_RATIO = 1100
_SAFE_FILTERS = frozenset({h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32})
# Everything h5py, HDF5, numpy or json can raise on a damaged or hostile file.
_LIBRARY_ERRORS = (OSError, ValueError, LookupError, TypeError, RuntimeError, ArithmeticError, MemoryError)


def _brief(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text[:200]


@contextlib.contextmanager
def _damaged_file_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except _LIBRARY_ERRORS as exc:
        # HDF5 passes on the system's errno (a file lock, permissions, I/O); its format errors have none
        if isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise ModelFileError(
                f"{path} is open for writing in another program (HDF5 file lock); "
                "close it there and try again"
            ) from exc
        if isinstance(exc, OSError) and exc.errno is not None:
            raise ModelFileError(f"cannot read {path} ({_brief(exc)})") from exc
        raise DamagedModelFileError(f"{path} is damaged or truncated ({_brief(exc)})") from exc


def _plain_attr(obj: h5py.HLObject, name: str) -> Any:
    """A single text or number attribute; shape and type are checked first so it cannot be large."""
    if name not in obj.attrs:
        return None
    aid = obj.attrs.get_id(name)
    if aid.shape != ():
        raise ValueError(f"attribute '{name}' is not a single value")
    if h5py.check_string_dtype(aid.dtype) is None and aid.dtype.kind not in "iuf":
        raise ValueError(f"attribute '{name}' has an unexpected type")
    value = obj.attrs[name]
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _json_attrs(group: h5py.Group) -> dict[str, Any]:
    if len(group.attrs) > MAX_ATTRS:
        raise ValueError("too many attributes")
    out: dict[str, Any] = {}
    for name in group.attrs:
        text = _plain_attr(group, name)
        if not isinstance(text, str):
            raise ValueError(f"attribute '{name}' is not JSON text")
        out[name] = json.loads(text)
    return out


def _read_header(f: h5py.File, path: Path) -> dict[str, Any]:
    fmt = _plain_attr(f, "format")
    if fmt != FORMAT:
        detail = "no format mark" if fmt is None else f"format {fmt!r}"
        raise ModelFileError(f"{path} is an HDF5 file but not a distillgan model file ({detail})")
    version = _plain_attr(f, "schema_version")
    if not isinstance(version, int) or version < 1:
        raise DamagedModelFileError(f"{path} is damaged or truncated (bad schema version {version!r})")
    if version > SCHEMA_VERSION:
        raise ModelFileError(f"{path} was made by a newer distillgan (schema {version}); upgrade distillgan")
    header: dict[str, Any] = {"format": fmt, "schema_version": version}
    for key in ("app_version", "created", "updated"):
        value = _plain_attr(f, key)
        header[key] = value if isinstance(value, str) else None
    return header


def _open_h5(path: Path) -> tuple[h5py.File, dict[str, Any]]:
    """Open ``path`` for reading after checking it is a distillgan model file; returns its header."""
    if not path.exists():
        raise ModelFileError(f"no model file at {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a distillgan model file")
    if not path.is_file():  # a FIFO or device would block or never end
        raise ModelFileError(f"{path} is not a distillgan model file (not a regular file)")
    try:
        with open(path, "rb") as fh:
            empty = fh.read(1) == b""
    except OSError as exc:
        raise ModelFileError(f"cannot read {path} ({exc.strerror})") from exc
    if empty:
        raise DamagedModelFileError(f"{path} is not a distillgan model file (empty file)")
    with _damaged_file_errors(path):
        if not h5py.is_hdf5(path):
            raise DamagedModelFileError(f"{path} is not a distillgan model file (not HDF5)")
        # HDF5's default locking ("best-effort") must be kept: HDF5 refuses to open one file twice in a
        # process with different locking flags, and other code may hold it open with the default.
        f = h5py.File(path, "r")
        try:
            return f, _read_header(f, path)
        except BaseException:
            f.close()
            raise


def _child(group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset | None:
    """The object stored as ``name``, refusing soft and external links (an external link opens any file)."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise ModelFileError(f"{group.file.filename}: '{group.name}/{name}' is a link, not stored data")
    return group[name]


def _collect_datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    """Every dataset below ``group`` by relative name; bounded so hard-link cycles cannot loop forever."""
    found: dict[str, h5py.Dataset] = {}
    visited = 0

    def visit(g: h5py.Group, prefix: str, depth: int) -> None:
        nonlocal visited
        if depth > MAX_DEPTH:
            raise ValueError("groups are nested too deeply")
        for name in g:
            visited += 1
            if visited > MAX_OBJECTS:
                raise ValueError("too many stored objects")
            obj = _child(g, name)
            if isinstance(obj, h5py.Dataset):
                found[prefix + name] = obj
            elif isinstance(obj, h5py.Group):
                visit(obj, f"{prefix}{name}/", depth + 1)
            else:
                raise ValueError(f"'{prefix}{name}' is neither data nor a group")

    visit(group, "", 0)
    return found


def _describe_dtype(dtype: np.dtype) -> str:
    if h5py.check_string_dtype(dtype) is not None:
        return "text"
    if dtype.fields is not None:
        return "compound"
    if dtype.kind == "O":
        return "object"
    return f"'{dtype}'"


def _checked_nbytes(ds: h5py.Dataset, what: str) -> int:
    """Size in bytes of ``ds`` once read, refusing anything but honest, in-file, plain numeric data."""
    dtype = ds.dtype
    if not _is_plain_numeric(dtype):
        raise ModelFileError(
            f"{what} holds {_describe_dtype(dtype)} data, not plain numbers; refusing to read it"
        )
    if ds.is_virtual or ds.external:
        raise ModelFileError(f"{what} keeps its data outside the file; refusing to read it")
    shape = ds.shape
    if shape is None:
        raise ModelFileError(f"{what} has no shape; the file is damaged")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_READ_BYTES:
        raise ModelFileError(f"{what} declares shape {shape}, more than any model holds; refusing to read it")
    plist = ds.id.get_create_plist()
    filters = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
    if not filters <= _SAFE_FILTERS:
        raise ModelFileError(f"{what} uses an unsupported storage filter; refusing to read it")
    stored = ds.id.get_storage_size()
    capacity = stored * _DEFLATE_MAX_RATIO if h5py.h5z.FILTER_DEFLATE in filters else stored
    if nbytes > capacity:
        raise ModelFileError(
            f"{what} declares {nbytes} bytes but the file stores only {stored}; refusing to read it"
        )
    return nbytes


def _check_expected(
    shapes: Mapping[str, tuple[int, ...]],
    expected: Mapping[str, tuple[int, ...]],
    where: str,
    optional: Collection[str] = (),
) -> None:
    missing = sorted(set(expected) - set(shapes) - set(optional))
    if missing:
        raise ModelFileError(f"{where} lacks weight '{missing[0]}' (the file does not match this network)")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise ModelFileError(
            f"{where} has an unexpected weight '{extra[0]}' (the file does not match this network)"
        )
    for name in sorted(set(expected) & set(shapes)):
        if tuple(shapes[name]) != tuple(expected[name]):
            raise ModelFileError(
                f"{where}/{name} has shape {tuple(shapes[name])}, expected {tuple(expected[name])}"
                " (the file does not match this network)"
            )


def _read_dataset(ds: h5py.Dataset) -> torch.Tensor:
    torch = _torch()
    value = ds[()]
    array = value if isinstance(value, np.ndarray) else np.array(value)  # 0-d datasets give numpy scalars
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.writeable:
        array = array.copy()
    tensor = torch.from_numpy(array)
    tag = _plain_attr(ds, _BF16_ATTR)
    if tag is not None:
        if tag != "bfloat16" or tensor.dtype != torch.uint16:
            raise ValueError(f"'{ds.name}' has an unknown stored dtype {tag!r}")
        tensor = tensor.view(torch.bfloat16)
    return tensor


def _read_tensors(
    group: h5py.Group,
    where: str,
    expected: Mapping[str, tuple[int, ...]] | None,
    map_location: str | torch.device,
    allow_non_finite: bool,
    optional: Collection[str] = (),
) -> dict[str, torch.Tensor]:
    torch = _torch()
    datasets = _collect_datasets(group)
    if expected is not None:
        _check_expected({name: ds.shape for name, ds in datasets.items()}, expected, where, optional)
        for name, ds in datasets.items():  # network weights: anything but floats is not ours
            if ds.dtype.kind != "f" and _plain_attr(ds, _BF16_ATTR) != "bfloat16":
                raise ModelFileError(
                    f"{where}/{name} holds {_describe_dtype(ds.dtype)} values, not float weights;"
                    " refusing to read it"
                )
    # every check happens before the first byte of data is read or allocated
    total = sum(_checked_nbytes(ds, f"{where}/{name}") for name, ds in datasets.items())
    if total > MAX_READ_BYTES:
        raise ModelFileError(f"{where} declares {total} bytes of tensors, more than any model holds")
    out: dict[str, torch.Tensor] = {}
    for name, ds in datasets.items():
        tensor = _read_dataset(ds)
        if not allow_non_finite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{where}/{name} holds non-finite weights (NaN or Inf); the model is broken")
        out[name] = tensor.to(map_location)
    return out


class ModelReader:
    """Read access to one model file (get one from :func:`open_model`).

    The file is opened only inside each call, so a writer's atomic replace between calls is
    harmless: every call sees one complete file, old or new.
    """

    def __init__(self, path: Path, root_attrs: dict[str, Any]) -> None:
        self.path = path
        self.root_attrs = root_attrs

    def __repr__(self) -> str:
        return f"ModelReader({str(self.path)!r})"

    @contextlib.contextmanager
    def _open(self) -> Iterator[h5py.File]:
        f, _ = _open_h5(self.path)
        with _damaged_file_errors(self.path), f:
            yield f

    def _section(self, f: h5py.File, section: str) -> h5py.Group:
        group = _child(f, section) if _SECTION_RE.fullmatch(section) else None
        if not isinstance(group, h5py.Group):
            raise ModelFileError(f"{_label(self.path)} has no {section} stage ({self.path})")
        return group

    def sections(self) -> list[str]:
        """Names of the stages stored in the file."""
        with self._open() as f:
            return sorted(n for n in f if _SECTION_RE.fullmatch(n) and isinstance(_child(f, n), h5py.Group))

    def has(self, section: str) -> bool:
        with self._open() as f:
            return _SECTION_RE.fullmatch(section) is not None and isinstance(_child(f, section), h5py.Group)

    def attrs(self, section: str) -> dict[str, Any]:
        """The stage's attributes under this schema's names (an older file's renamed ones too).
        Read them through :mod:`~distillgan.modelfile.records`, which checks every value."""
        with self._open() as f:
            attrs = _json_attrs(self._section(f, section))
            version = _plain_attr(f, "schema_version")  # checked by _open_h5: this very file's
        for old, new in renamed_attrs(version, section):
            if old in attrs and new not in attrs:
                attrs[new] = attrs.pop(old)
        return attrs

    def tensors(
        self,
        section: str,
        expected: Mapping[str, tuple[int, ...]] | None = None,
        *,
        prefix: str = "",
        map_location: str | torch.device = "cpu",
        allow_non_finite: bool = False,
        optional: Collection[str] = (),
    ) -> dict[str, torch.Tensor]:
        """Tensors below ``section[/prefix]`` by relative name ("a/b" for nested groups).

        With ``expected`` (network weights) the names and shapes must match exactly and the
        values must be floating point; the ``optional`` names among them (added to a network
        after files were written without them) may be absent. Give a ``prefix`` (e.g.
        "generator") when the section also holds other tensors such as a packed tree.
        """
        with self._open() as f:
            group = self._section(f, section)
            for part in prefix.split("/") if prefix else []:
                child = _child(group, part) if part not in ("", ".", "..") else None
                if not isinstance(child, h5py.Group):
                    raise ModelFileError(f"{_label(self.path)} has no {section}/{prefix} data ({self.path})")
                group = child
            where = f"{_label(self.path)}: {section}" + (f"/{prefix}" if prefix else "")
            return _read_tensors(group, where, expected, map_location, allow_non_finite, optional)

    def tree(
        self,
        section: str,
        *,
        key: str = TREE_KEY,
        map_location: str | torch.device = "cpu",
        allow_non_finite: bool = False,
    ) -> Any:
        """The structure stored with :func:`pack_tree` in ``section`` (one consistent read)."""
        with self._open() as f:
            group = self._section(f, section)
            attrs = _json_attrs(group)
            if key not in attrs:
                raise ModelFileError(f"{_label(self.path)} has no saved state in its {section} stage")
            sub = _child(group, key)
            where = f"{_label(self.path)}: {section}/{key}"
            found = (
                _read_tensors(sub, where, None, map_location, allow_non_finite)
                if isinstance(sub, h5py.Group)
                else {}
            )
            return unpack_tree(attrs, {f"{key}/{name}": t for name, t in found.items()}, key=key)

    def size_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError as exc:
            raise ModelFileError(f"no model file at {self.path} ({exc.strerror})") from exc


def open_model(path: str | Path) -> ModelReader:
    """Check that ``path`` is a readable distillgan model file of a schema we understand."""
    path = Path(path).expanduser()
    f, header = _open_h5(path)
    f.close()
    return ModelReader(path, header)
