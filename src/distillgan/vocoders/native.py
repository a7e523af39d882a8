"""The compiled resblock kernel of the per-model HiFi-GAN (``resblocks.c``), built on first use.

At 8-32 channels, oneDNN's convolutions use a third to a half of a core's arithmetic; the
kernel computes a stage's resblocks 1.1x (64 channels) to 3x (16) faster, and the whole
vocoder 1.3-1.5x (measured on AVX2, see ``benchmarks/vocode_speed.py``). It is plain C,
compiled once per machine with the system C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``) for the CPU it runs on (``-march=native``), and cached under
``$XDG_CACHE_HOME/distillgan/kernels`` (default ``~/.cache``) by a hash of source, compiler,
flags and the CPU features the compiler sees. Installing distillgan needs no compiler: without one, or with
``DISTILLGAN_NATIVE_KERNELS=0``, vocoding runs on torch's convolutions, same output up to float
rounding, only slower. The reason is logged (logger ``distillgan.vocoders.native``).

A cached library is code this process runs, so the cache must be the user's own and private (a
cache another user can write to is not used), and a library is loaded only if it still has the
SHA-256 recorded beside it when it was built.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SWITCH_ENV = "DISTILLGAN_NATIVE_KERNELS"
SOURCE = Path(__file__).with_name("resblocks.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=gnu11", "-shared", "-fPIC")
COMPILE_TIMEOUT_S = 120


class KernelUnavailable(Exception):
    """Why the compiled kernel cannot be used here (vocoding then uses torch's convolutions)."""


class ResblockKernel:
    """``resblocks.c`` loaded: a stage's parallel resblocks on one channels-last time tile."""

    def __init__(self, path: Path) -> None:
        library = ctypes.CDLL(str(path))  # a CDLL call releases the GIL: worker threads run in parallel
        self._supported = library.distillgan_resblocks_channels_supported
        self._supported.argtypes = [ctypes.c_int]
        self._supported.restype = ctypes.c_int
        self._run = library.distillgan_resblocks
        pointer, integer = ctypes.c_void_p, ctypes.c_int
        self._run.argtypes = [integer, pointer, integer, integer, integer, pointer]
        self._run.argtypes += [integer, pointer, pointer, pointer, pointer, ctypes.c_float]
        self._run.restype = integer
        self.path = path

    def supports(self, channels: int) -> bool:
        return bool(self._supported(channels))

    def __call__(
        self,
        x: torch.Tensor,
        keep: tuple[int, int],
        out: torch.Tensor,
        stage: PackedStage,
        slope: float,
    ) -> None:
        """``out`` = rows ``keep`` of the stage's resblocks on ``x``, both time-major ``(T, C)``.

        ``x`` and ``out`` must be contiguous float32 CPU tensors (``out`` holding exactly the
        kept rows), with the stage's channel count; an unsupported count is a ValueError.
        """
        length, channels = x.shape
        start, stop = keep
        layout_ok = all(
            t.is_contiguous() and t.dtype == torch.float32 and t.device.type == "cpu" for t in (x, out)
        )
        shape_ok = channels == stage.channels and tuple(out.shape) == (stop - start, channels)
        if not (layout_ok and shape_ok and 0 <= start <= stop <= length):
            raise ValueError(f"bad tile: {tuple(x.shape)}, keep {keep}, out {tuple(out.shape)}")
        status = self._run(
            channels,
            x.data_ptr(),
            length,
            start,
            stop,
            out.data_ptr(),
            len(stage.kernels),
            stage.kernels.data_ptr(),
            stage.layers.data_ptr(),
            stage.dilations.data_ptr(),
            stage.weights.data_ptr(),
            slope,
        )
        if status == -1:
            raise ValueError(f"the resblock kernel does not support {channels} channels")
        if status != 0:
            raise MemoryError(f"the resblock kernel could not allocate a {length}-sample tile")


ConvPair = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class PackedStage:
    """A stage's resblock convolutions in the kernel's layout (see ``resblocks.c``)."""

    def __init__(self, blocks: list[list[ConvPair]], dilations: list[list[int]]) -> None:
        """``blocks[b][layer]`` = (conv1 weight, conv1 bias, conv2 weight, conv2 bias), weights
        ``(C_out, C_in, K)``; ``dilations[b][layer]`` is conv1's dilation (conv2's is 1)."""
        parts = []
        for block in blocks:
            for w1, b1, w2, b2 in block:
                parts += [w1.permute(2, 1, 0).reshape(-1), b1, w2.permute(2, 1, 0).reshape(-1), b2]
        self.channels = blocks[0][0][0].shape[0]
        self.kernels = torch.tensor([block[0][0].shape[-1] for block in blocks], dtype=torch.int32)
        self.layers = torch.tensor([len(block) for block in blocks], dtype=torch.int32)
        self.dilations = torch.tensor([d for ds in dilations for d in ds], dtype=torch.int32)
        self.weights = torch.cat(parts).detach().to("cpu", torch.float32).contiguous()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError as error:  # no $HOME and no user entry (some containers)
            raise KernelUnavailable("no cache folder: neither $XDG_CACHE_HOME nor a home folder") from error
    return Path(base) / "distillgan" / "kernels"


def _compiler() -> list[str]:
    """``$CC`` (it may carry arguments, as in ``ccache gcc``), else the first of cc, gcc, clang."""
    if os.environ.get("CC"):
        command = shlex.split(os.environ["CC"])
        if not command or not shutil.which(command[0]):
            raise KernelUnavailable(f"$CC ({os.environ['CC']}) is not a command on PATH")
        return command
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return [path]
    raise KernelUnavailable("no C compiler found (set $CC, or install gcc or clang)")


def _output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as error:
        raise KernelUnavailable(f"{' '.join(command[:2])} does not run: {error}") from error
    if done.returncode != 0:
        raise KernelUnavailable(f"{' '.join(command[:2])} failed: {done.stderr.strip()[:500]}")
    return done.stdout


def _cpu_identity(compiler: list[str]) -> str:
    """What ``-march=native`` compiles for here: the machine and the CPU features the compiler sees."""
    return platform.machine() + _output([*compiler, "-march=native", "-dM", "-E", "-x", "c", os.devnull])


def _private_folder(folder: Path) -> Path:
    """``folder`` (created if missing), refused unless no other user can write into it.

    It must be this user's and writable by nobody else, and so must every folder above it, except
    root's and sticky ones (like /tmp, where nobody may rename what another user owns).
    """
    for path in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
        path.mkdir(mode=0o700, exist_ok=True)
    folder = folder.resolve()
    for path in (folder, *folder.parents):
        info = path.stat()
        if info.st_uid != os.getuid() and (path == folder or info.st_uid != 0):
            raise KernelUnavailable(f"{path} belongs to another user: the kernel cache must be your own")
        if info.st_mode & 0o022 and (path == folder or not info.st_mode & stat.S_ISVTX):
            raise KernelUnavailable(
                f"{path} is writable by other users: the kernel cache must be private (chmod go-w {path})"
            )
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recorded(library: Path) -> Path:
    """Where the SHA-256 of ``library`` is recorded when it is built."""
    return library.with_name(f"{library.name}.sha256")


def _intact(library: Path) -> bool | None:
    """Whether ``library`` has the SHA-256 recorded at its build; None when either file is missing."""
    if not (library.is_file() and _recorded(library).is_file()):
        return None
    return _sha256(library) == _recorded(library).read_text().strip()


def build(directory: Path | None = None) -> Path:
    """The kernel's shared library for this machine, compiled unless already cached and intact."""
    compiler = _compiler()
    version = _output([*compiler, "--version"])
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join([source, version.encode(), " ".join(FLAGS).encode(), _cpu_identity(compiler).encode()])
    )
    folder = directory or cache_dir()
    try:
        target = _private_folder(folder) / f"resblocks-{key.hexdigest()[:16]}.so"
        intact = _intact(target)
        if intact:
            return target
        if intact is False:  # changed since its build: never loaded
            log.warning("%s does not match the SHA-256 recorded when it was built; building it again", target)
        # compiled beside the target, then renamed (the hash after the library): a concurrent
        # process never loads half a file
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            try:
                _output([*compiler, *FLAGS, "-o", str(built), str(SOURCE)])
            except KernelUnavailable as error:
                raise KernelUnavailable(f"could not compile {SOURCE.name}: {error}") from None
            _recorded(built).write_text(_sha256(built) + "\n")
            os.replace(built, target)
            os.replace(_recorded(built), _recorded(target))
    except OSError as error:
        raise KernelUnavailable(f"could not build {SOURCE.name} in {folder}: {error}") from error
    if not _intact(target):  # another process's build of the same key landed in between
        raise KernelUnavailable(f"{target} changed while it was being built; try again")
    return target


_lock = threading.Lock()


@functools.cache
def _load() -> ResblockKernel | KernelUnavailable:
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return KernelUnavailable(f"disabled by {SWITCH_ENV}")
    try:
        return ResblockKernel(build())
    except KernelUnavailable as reason:
        return reason
    except OSError as error:  # the library exists but does not load
        return KernelUnavailable(f"could not load the compiled kernel: {error}")


def resblock_kernel() -> ResblockKernel | None:
    """The compiled kernel, or None (reason logged once) when it cannot be used here."""
    with _lock:
        first = _load.cache_info().currsize == 0
        loaded = _load()
    if isinstance(loaded, KernelUnavailable):
        if first:
            log.info("vocoding with torch's convolutions: %s", loaded)
        return None
    return loaded


def status() -> str:
    """``native`` when the compiled kernel is in use, else ``torch (<reason>)``."""
    with _lock:
        loaded = _load()
    return "native" if isinstance(loaded, ResblockKernel) else f"torch ({loaded})"
