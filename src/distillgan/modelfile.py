"""Read and write ``.distillgan`` model files: HDF5 through h5py, no pickle anywhere.

Layout: the root carries ``format``, ``schema_version``, ``app_version``, ``created`` and
``updated`` attributes; every stage is one top-level group ("vae", "dataset", "vocoder",
"vocoder_checkpoint") whose attributes are JSON strings and whose tensors are plain numeric
datasets (a "/" in a tensor name makes nested groups).

Writers hold a :class:`ModelLock` and replace the whole file atomically. Readers open the file
only inside each call and treat it as hostile input: links, dtypes, shapes, sizes and storage of
every dataset are checked before any data is read, and every library error becomes a
:class:`ModelFileError` with one clear line.

Importing this module does not import torch (listing and resolving models stays fast); torch is
imported on first tensor use.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from distillgan import __version__
from distillgan.errors import DamagedModelFileError, ModelFileError, ModelLockedError

if TYPE_CHECKING:
    import torch

SCHEMA_VERSION: int = 1
FORMAT = "distillgan"
SUFFIX = ".distillgan"
MODELS_DIR_ENV = "DISTILLGAN_MODELS_DIR"

LOCK_SUFFIX = ".lock"
TREE_KEY = "tree"

# Limits for untrusted files, far above real models: a full vocoder checkpoint (generator,
# discriminators, two Adam optimizers) is under 1 GiB. Applied per read call.
MAX_READ_BYTES = 2 * 1024**3
MAX_OBJECTS = 100_000
MAX_DEPTH = 32
MAX_ATTRS = 10_000

_TMP_MARK = ".tmp-"
_TMP_TAIL_RE = re.compile(r"([0-9]{1,12})-[0-9a-f]{8}")  # after the mark: writer's pid, random token
_BF16_ATTR = "torch_dtype"
# deflate cannot compress better than about 1032:1, so more declared bytes than this means
# the dataset would be filled from nothing (unwritten chunks) -- a memory bomb, not weights.
_DEFLATE_MAX_RATIO = 1100
_SAFE_FILTERS = frozenset({h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32})
_PLAIN_NUMERIC = frozenset(
    {("b", 1), ("f", 2), ("f", 4), ("f", 8)} | {(kind, size) for kind in "iu" for size in (1, 2, 4, 8)}
)
_NAME_RE = re.compile(r"[\w\-. ]+")
_SECTION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
# Everything h5py, HDF5, numpy or json can raise on a damaged or hostile file.
_LIBRARY_ERRORS = (OSError, ValueError, LookupError, TypeError, RuntimeError, ArithmeticError, MemoryError)


def _torch() -> ModuleType:
    import torch

    return torch


@dataclass
class Section:
    """One top-level group: JSON-able attributes and named tensors."""

    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor | np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Finding models


def default_models_dir(override: str | Path | None = None) -> Path:
    """``override``, else ``$DISTILLGAN_MODELS_DIR``, else ``~/distillgan/models`` (not created)."""
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(MODELS_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / "distillgan" / "models"


def _check_name(name: str) -> None:
    ok = (
        _NAME_RE.fullmatch(name) is not None
        # a leading dot would hide the file (and collide with our temp files); edge spaces confuse
        and not name.startswith((".", " "))
        and not name.endswith(" ")
        # leaves room for the suffix and temp-file decorations within a 255-byte file name
        and len(name.encode("utf-8")) <= 200
    )
    if not ok:
        raise ModelFileError(
            f"'{name}' is not a valid model name (use letters, digits, '-', '_', '.' and spaces)"
        )


def resolve_model(
    name_or_path: str | Path, models_dir: str | Path | None = None, *, must_exist: bool = True
) -> Path:
    """A path (a ``Path``, or text with "/", ending in .distillgan or naming a file) as-is, else a model name."""
    text = str(name_or_path)
    is_path = (
        isinstance(name_or_path, Path)
        or "/" in text
        or text.endswith(SUFFIX)
        or (text != "" and Path(text).expanduser().is_file())
    )
    if is_path:
        path = Path(text).expanduser()
        if must_exist and not path.exists():
            raise ModelFileError(f"no model file at {path}")
        return path
    _check_name(text)
    folder = default_models_dir(models_dir)
    path = folder / f"{text}{SUFFIX}"
    if must_exist and not path.exists():
        raise ModelFileError(f"no model named '{text}' in {folder} (see `distillgan model list`)")
    return path


def new_model_path(name: str, models_dir: str | Path | None = None) -> Path:
    """Where a new model called ``name`` lives: ``<models dir>/<name>.distillgan`` (a name, never a path)."""
    _check_name(name)
    return default_models_dir(models_dir) / f"{name}{SUFFIX}"


def list_models(models_dir: str | Path | None = None) -> list[Path]:
    """The model files in ``models_dir`` sorted by name; temp and lock files are skipped."""
    folder = default_models_dir(models_dir)
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ModelFileError(f"cannot list models in {folder} ({exc.strerror})") from exc
    models = [p for p in entries if p.name.endswith(SUFFIX) and not p.name.startswith(".") and p.is_file()]
    return sorted(models, key=lambda p: (p.name.casefold(), p.name))


def _label(path: Path) -> str:
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    return f"model '{name}'"


def _canonical(path: str | Path) -> Path:
    # resolve symlinks so the lock and the replaced file are the real file, not the link
    return Path(path).expanduser().resolve()


# ---------------------------------------------------------------------------------------------
# Reading


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


def _is_plain_numeric(dtype: np.dtype) -> bool:
    return dtype.fields is None and dtype.subdtype is None and (dtype.kind, dtype.itemsize) in _PLAIN_NUMERIC


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
    shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], where: str
) -> None:
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise ModelFileError(f"{where} lacks weight '{missing[0]}' (the file does not match this network)")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise ModelFileError(
            f"{where} has an unexpected weight '{extra[0]}' (the file does not match this network)"
        )
    for name in sorted(expected):
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
) -> dict[str, torch.Tensor]:
    torch = _torch()
    datasets = _collect_datasets(group)
    if expected is not None:
        _check_expected({name: ds.shape for name, ds in datasets.items()}, expected, where)
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
        with self._open() as f:
            return _json_attrs(self._section(f, section))

    def tensors(
        self,
        section: str,
        expected: Mapping[str, tuple[int, ...]] | None = None,
        *,
        prefix: str = "",
        map_location: str | torch.device = "cpu",
        allow_non_finite: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Tensors below ``section[/prefix]`` by relative name ("a/b" for nested groups).

        With ``expected`` (network weights) the names and shapes must match exactly and the
        values must be floating point. Give a ``prefix`` (e.g.
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
            return _read_tensors(group, where, expected, map_location, allow_non_finite)

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


# ---------------------------------------------------------------------------------------------
# Writing


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


def _check_tensor_names(names: set[str], section: str) -> None:
    for name in names:
        parts = name.split("/") if isinstance(name, str) else [""]
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid tensor name {name!r} in section '{section}'")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise ValueError(
                    f"tensor '{name}' in section '{section}' sits below tensor '{'/'.join(parts[:i])}'"
                )


def _write_tensor(group: h5py.Group, name: str, value: torch.Tensor | np.ndarray) -> None:
    array, tag = _to_numpy(value)
    ds = group.create_dataset(name, data=array)
    if tag is not None:
        ds.attrs[_BF16_ATTR] = tag


def _write_section(
    out: h5py.File, name: str, section: Section, check: Callable[[], None] = lambda: None
) -> None:
    group = out.create_group(name)
    for key, value in section.attrs.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"section '{name}' has an invalid attribute name {key!r}")
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"section '{name}' attribute '{key}' is not JSON-able ({exc})") from exc
        group.attrs[key] = text
    _check_tensor_names(set(section.tensors), name)
    for tensor_name, value in section.tensors.items():
        _write_tensor(group, tensor_name, value)
        check()


class _GuardedFile:
    """The file object HDF5 writes a new model file through (h5py's "fileobj" driver).

    HDF5 cannot recover from a failed write (disk full, quota, I/O error): its close then fails
    as well and leaves the library broken -- a stream of errors, sometimes a crash at exit. So a
    failed write is never reported to HDF5. The error is recorded, the bytes HDF5 meant to write
    are kept in memory (it reads back what it wrote), and :meth:`check` raises the error from
    our own code at the next safe point; HDF5 then closes cleanly and the temp file is deleted.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0
        self._size = 0
        self.error: OSError | None = None
        self._held: list[tuple[int, bytes]] = []

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}.get(whence, 0)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        size = max(0, self._size - self._pos) if size < 0 else size
        data = bytearray(size)  # HDF5 expects exactly ``size`` bytes, zeros past the end
        got = 0
        try:
            while got < size:
                chunk = os.pread(self._fd, size - got, self._pos + got)
                if not chunk:
                    break
                data[got : got + len(chunk)] = chunk
                got += len(chunk)
        except OSError as exc:
            self._fail(exc)
        for start, held in self._held:
            low, high = max(start, self._pos), min(start + len(held), self._pos + size)
            if low < high:
                data[low - self._pos : high - self._pos] = held[low - start : high - start]
        self._pos += size
        return bytes(data)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        count = len(view)
        if self.error is None:
            try:
                done = 0
                while done < count:
                    written = os.pwrite(self._fd, view[done:], self._pos + done)
                    if written <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    done += written
            except OSError as exc:
                self._fail(exc)
        if self.error is not None:
            self._held.append((self._pos, view.tobytes()))
        self._pos += count
        self._size = max(self._size, self._pos)
        return count

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self._fail(exc)
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing to do: bytes go straight to the file; :func:`_build` fsyncs it at the end."""


def _stored_sections(f: h5py.File) -> list[str]:
    """The top-level entries a reader accepts as stages: groups stored in the file under a valid
    name. A link (soft, or external to another file) or a loose dataset is not carried into a
    rewrite: copying would turn a link into a plain copy of what it points to."""
    return [
        name
        for name in f
        if _SECTION_RE.fullmatch(name)
        and isinstance(f.get(name, getlink=True), h5py.HardLink)
        and isinstance(f[name], h5py.Group)
    ]


def _build(tmp: Path, old: Path | None, sections: Mapping[str, Section | None], created: str | None) -> None:
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        guard = _GuardedFile(fd)
        with h5py.File(guard, "w") as out:
            if old is not None:
                with _damaged_file_errors(old), h5py.File(old, "r") as src:
                    for name in _stored_sections(src):
                        if name not in sections:
                            src.copy(src[name], out, name=name)  # attributes and nested data come along
                guard.check()  # outside: a failed write is not a damaged old file
            for name, section in sections.items():
                if section is not None:
                    _write_section(out, name, section, guard.check)
            now = _utc_now()
            out.attrs["format"] = FORMAT
            out.attrs["schema_version"] = SCHEMA_VERSION
            out.attrs["app_version"] = __version__
            out.attrs["created"] = created or now
            out.attrs["updated"] = now
        guard.check()  # closing flushed HDF5's last buffers through the guard
        # fsync gets the bytes on disk before the rename makes them live
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # best effort: some file systems refuse fsync on directories, and the replace already happened
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_model(
    path: str | Path,
    sections: Mapping[str, Section | None],
    *,
    lock: ModelLock,
    create: bool = False,
    replace_damaged: bool = False,
) -> None:
    """Atomically rewrite the model at ``path``: ``sections`` replace (or, when None, delete) stages.

    Stages not named are copied unchanged. On any error the old file stays untouched and the
    temp file is removed. ``lock`` must be held for this path. ``replace_damaged``: a file whose
    bytes are no readable model (:class:`DamagedModelFileError`) is replaced by ``sections`` alone
    instead of refused; any other file that cannot be read is always refused.
    """
    target = _canonical(path)
    if not (lock.held and lock.path == target):
        raise ValueError(f"write_model needs a held ModelLock for {target}")
    for name in sections:
        if not isinstance(name, str) or _SECTION_RE.fullmatch(name) is None:
            raise ValueError(f"invalid section name {name!r}")
    exists = target.exists()
    if not exists and not create:
        raise ModelFileError(f"no model file at {target}")
    old: Path | None = target if exists else None
    created = None
    if old is not None:
        # refuses damaged or newer-schema files before anything is built on them
        try:
            created = open_model(target).root_attrs.get("created")
        except DamagedModelFileError:
            if not replace_damaged:
                raise
            old = None  # nothing in it can be kept
    tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        _build(tmp, old, sections, created)
        if exists:
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = "the model file is unchanged" if exists else "nothing was written"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ModelFileError(
                f"not enough disk space to write {target} ({os.strerror(exc.errno)}); {kept}"
            ) from exc
        raise ModelFileError(f"cannot write {target} ({_brief(exc)}); {kept}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


# ---------------------------------------------------------------------------------------------
# Writer lock


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c for c in text if c.isprintable())[:limit]


def _describe_holder(raw: bytes) -> str:
    """Who holds a lock, from the JSON its holder wrote (untrusted: any field may be missing)."""
    try:
        info = json.loads(raw.decode("utf-8"))
    except ValueError:
        info = None
    if not isinstance(info, dict):
        return "another process"
    owner = info.get("owner")
    text = _printable(owner) if isinstance(owner, str) and owner else "another process"
    details = []
    pid, host = info.get("pid"), info.get("host")
    if isinstance(pid, int):
        details.append(f"pid {pid} on {_printable(host, 100)}" if isinstance(host, str) else f"pid {pid}")
    since = info.get("since")
    with contextlib.suppress(TypeError, ValueError):
        moment = datetime.fromisoformat(since).astimezone()
        today = moment.date() == datetime.now().astimezone().date()
        details.append("since " + moment.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S"))
    return f"{text} ({', '.join(details)})" if details else text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def _remove_orphaned_temps(target: Path) -> None:
    """Delete temp files that writes of ``target`` left behind when their process died (kill -9,
    power cut, OOM killer): ``.<name>.tmp-<pid>-<8 hex>`` files whose pid is gone.

    Only a lock holder calls this. Holding the lock already means no other writer is at work;
    the dead-pid test is a second guard. Best effort: a temp file left in place is harmless
    (hidden, and never listed as a model), it only wastes space.
    """
    prefix = f".{target.name}{_TMP_MARK}"
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        match = _TMP_TAIL_RE.fullmatch(entry.name[len(prefix) :])
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


class ModelLock:
    """Exclusive writer lock for one model: ``flock`` on ``<model>.lock`` beside the model file.

    flock belongs to one open file description, which gives the two properties we need:

    * the kernel drops it when the holder dies, so a lock file left by a killed process holds
      stale text but no lock and is simply acquired again;
    * a second ``open()`` of the lock file conflicts even inside the same process (two threads,
      two UI tabs), so every ModelLock object is its own holder.

    A lock file outlives its holder beside a model file. When there is no model file (a failed
    creation, a model deleted or renamed), the holder deletes the lock file before unlocking,
    so nothing is left behind. That is safe because acquiring checks, once locked, that the
    path still names the file it locked, and starts over otherwise: a process that opened the
    old file before it was deleted never holds a lock on it while another locks a new one.
    """

    def __init__(self, path: str | Path, *, owner: str) -> None:
        self.path = _canonical(path)
        self.lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        self.owner = owner
        self._fd: int | None = None
        self._pid = 0

    @property
    def held(self) -> bool:
        # a forked child inherits the descriptor but is not the holder
        return self._fd is not None and self._pid == os.getpid()

    def _cannot_lock(self, exc: OSError) -> ModelFileError:
        return ModelFileError(f"cannot lock {_label(self.path)}: {self.lock_path} ({exc.strerror})")

    def acquire(self) -> ModelLock:
        """Take the lock without waiting; ModelLockedError names the holder if it is taken."""
        if self._fd is not None:
            raise RuntimeError(f"this ModelLock for {self.path} is already acquired")
        fd = self._lock_file()
        while not self._still_named(fd):  # its holder deleted it after we opened it: take the new one
            os.close(fd)
            fd = self._lock_file()
        info = {"pid": os.getpid(), "host": socket.gethostname(), "owner": self.owner, "since": _utc_now()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        except OSError as exc:
            os.close(fd)  # closing the only descriptor releases the flock
            raise self._cannot_lock(exc) from exc
        self._fd, self._pid = fd, os.getpid()
        _remove_orphaned_temps(self.path)
        return self

    def _still_named(self, fd: int) -> bool:
        try:
            named = os.stat(self.lock_path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _lock_file(self) -> int:
        """The lock file, opened (created if need be) and flocked; raises if another holds it."""
        try:
            # never through a link: one planted in a shared folder would have us truncate its target
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ModelFileError(
                    f"cannot lock {_label(self.path)}: {self.lock_path} is a symbolic link; remove it"
                ) from exc
            raise self._cannot_lock(exc) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ModelFileError(
                f"cannot lock {_label(self.path)}: {self.lock_path} is not a regular file; remove it"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise ModelLockedError(
                f"{_label(self.path)} is in use by {holder}; wait for it to finish or stop it"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise self._cannot_lock(exc) from exc
        return fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._pid == os.getpid():  # a forked child must not unlock its parent's lock
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    if not os.path.lexists(self.path) and self._still_named(fd):  # no model: nothing to guard
                        os.unlink(self.lock_path)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> ModelLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------
# Nested structures (optimizer and scheduler state, RNG states, histories)


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
