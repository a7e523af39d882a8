"""Finding, downloading and loading NVIDIA's BigVGAN-v2 weights (``44khz_128band_512x``).

Only ``config.json`` and ``bigvgan_generator.pt`` are ever fetched (about 490 MB together);
the repository's 1+ GB discriminator/optimizer file is never touched. The files come from a
folder the user names, else from the standard Hugging Face cache, downloading them there once.
Hub settings (``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``) are read on
every call rather than at import, so a long-running UI and the tests can change them.

:func:`bigvgan_availability` says, without downloading, whether BigVGAN-v2 can be had and from
where, so front ends can mark it unavailable before anyone chooses it. When it cannot, the
reason is a :class:`BigVGANUnavailableError`, whose message names the way to give a folder in
the words of the front end that shows it (:func:`worded`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from huggingface_hub.utils import tqdm as hub_tqdm

from distillgan.errors import ConfigError, VocoderUnavailableError
from distillgan.filecache import FileVersion, file_version, once_per_file_version
from distillgan.mel import HOP_LENGTH, N_MELS, SAMPLE_RATE
from distillgan.networks.bigvgan import BigVGAN, BigVGANConfig

REPO_ID = "nvidia/bigvgan_v2_44khz_128band_512x"
REPO_URL = f"https://huggingface.co/{REPO_ID}"
FILES = ("config.json", "bigvgan_generator.pt")
LOCAL_DIR_ENV = "DISTILLGAN_BIGVGAN_DIR"
FOLDER_FIELD = "BigVGAN folder"  # the UI's field that does what the CLI's --bigvgan-dir does

# One HEAD request decides whether the hub answers at all. Without it huggingface_hub retries
# an unreachable host with back-off for ~25 s before giving up.
PROBE_TIMEOUT_S = 5.0
# How long an answer of that HEAD request stands for the availability shown in lists (the UI
# asks on every page load and model change); a download always asks afresh.
HUB_CHECK_TTL_S = 60.0

ProgressCallback = Callable[[str, int, int], None]
"""``progress(filename, done_bytes, total_bytes)``; ``total_bytes`` is 0 while unknown.

Called at the start and after each downloaded chunk (10 MB), possibly from a downloader thread.
"""

FrontEnd = Literal["cli", "ui"]

# The manual route, in each front end's words: one message, the way to name a folder differs.
_MANUAL_ROUTE: dict[str, str] = {
    "cli": f"pass --bigvgan-dir DIR (or set {LOCAL_DIR_ENV})",
    "ui": f'enter it as "{FOLDER_FIELD}" (Generate tab, Advanced)',
}


class BigVGANUnavailableError(VocoderUnavailableError):
    """BigVGAN-v2 cannot be had here: ``problem`` (why, in no front end's words), then the manual
    route (download the two files into a folder and name it) in the words of a front end.
    ``str()`` is the CLI's wording (the library's default), :meth:`worded` any front end's."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(self.worded("cli"))

    def worded(self, front_end: FrontEnd) -> str:
        route = (
            f"or download config.json and bigvgan_generator.pt from {REPO_URL} into a folder "
            f"and {_MANUAL_ROUTE[front_end]}"
        )
        return f"{self.problem}, {route}"


def worded(error: BaseException, front_end: FrontEnd) -> str:
    """An error's one line in ``front_end``'s words (only BigVGAN's route differs by front end)."""
    return error.worded(front_end) if isinstance(error, BigVGANUnavailableError) else str(error)


@dataclass(frozen=True)
class BigVGANAvailability:
    """Where BigVGAN-v2 would come from now, or why it cannot be had."""

    source: Literal["folder", "cache", "download"] | None  # None: unavailable
    folder: Path | None = None  # the folder it is read from (source "folder", or a bad folder)
    problem: VocoderUnavailableError | None = None

    @property
    def available(self) -> bool:
        return self.problem is None

    def describe(self, front_end: FrontEnd) -> str:
        """One line for people: where it comes from, or why it is unavailable."""
        if self.problem is not None:
            return worded(self.problem, front_end)
        if self.source == "folder":
            return f"BigVGAN-v2 is read from {self.folder}."
        if self.source == "cache":
            return "BigVGAN-v2 is in the Hugging Face cache."
        return "BigVGAN-v2 (~490 MB) is downloaded once, on first use."


def _named_folder(local_dir: str | Path | None) -> tuple[Path, str] | None:
    """The folder the caller (else ``$DISTILLGAN_BIGVGAN_DIR``) names, with where the name came from."""
    if local_dir is not None and str(local_dir).strip():
        return Path(local_dir).expanduser(), ""
    env_dir = os.environ.get(LOCAL_DIR_ENV, "").strip()
    if env_dir:
        return Path(env_dir).expanduser(), f" (from {LOCAL_DIR_ENV})"
    return None


def bigvgan_availability(local_dir: str | Path | None = None) -> BigVGANAvailability:
    """Whether BigVGAN-v2 can be had, decided without downloading anything.

    A named folder (``local_dir``, else ``$DISTILLGAN_BIGVGAN_DIR``) is checked on disk, the hub
    cache without network. Otherwise it is "downloadable" when the hub is not switched off
    (``HF_HUB_OFFLINE``) and answers one HEAD request for ``config.json`` within
    :data:`PROBE_TIMEOUT_S`: the request a download starts with, so the answer is honest, and
    cheap because a refused connection or failed name lookup answers at once and the answer is
    kept for :data:`HUB_CHECK_TTL_S` (a download itself always asks afresh).
    """
    named = _named_folder(local_dir)
    if named is not None:
        folder, source = named
        try:
            _files_in_folder(folder, source)
        except VocoderUnavailableError as error:
            return BigVGANAvailability(None, folder, error)
        return BigVGANAvailability("folder", folder)
    if _cached_files() is not None:
        return BigVGANAvailability("cache")
    problem = _download_problem(fresh=False)
    return BigVGANAvailability("download" if problem is None else None, problem=problem)


def locate_bigvgan_files(
    local_dir: str | Path | None = None,
    *,
    progress: ProgressCallback | None = None,
    allow_download: bool = True,
) -> tuple[Path, Path]:
    """Paths of ``(config.json, bigvgan_generator.pt)``, downloading them once if needed.

    ``local_dir`` (else ``$DISTILLGAN_BIGVGAN_DIR``) wins and is used as is, without the hub.
    Otherwise the hub cache is tried without network, then the files are downloaded, reporting
    bytes to ``progress``. Raises :class:`VocoderUnavailableError` with one actionable line.
    """
    named = _named_folder(local_dir)
    if named is not None:
        return _files_in_folder(*named)
    cached = _cached_files()
    if cached is not None:
        return cached
    if not allow_download:
        raise BigVGANUnavailableError(
            "BigVGAN-v2 weights are not downloaded yet: they are fetched once (~490 MB) when first needed"
        )
    problem = _download_problem(fresh=True)
    if problem is not None:
        raise problem
    return _download(progress)


def _files_in_folder(folder: Path, source: str = "") -> tuple[Path, Path]:
    if not folder.is_dir():
        raise VocoderUnavailableError(
            f"BigVGAN-v2 folder {folder}{source} does not exist: it must hold config.json and "
            f"bigvgan_generator.pt from {REPO_URL}"
        )
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise VocoderUnavailableError(
            f"BigVGAN-v2 folder {folder}{source} lacks {' and '.join(missing)}: download "
            f"{' and '.join(missing)} from {REPO_URL} into it"
        )
    config_path, weights_path = (folder / name for name in FILES)
    return config_path, weights_path


def _hub_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return hub_constants.HF_HUB_OFFLINE or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return hub_constants.HF_HUB_CACHE


def _hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT).rstrip("/")


def _cached_files() -> tuple[Path, Path] | None:
    """Both files from the hub cache without any network access, or None if one is missing."""
    paths = []
    for filename in FILES:
        try:
            paths.append(
                Path(hf_hub_download(REPO_ID, filename, cache_dir=_hub_cache_dir(), local_files_only=True))
            )
        except LocalEntryNotFoundError:
            return None
    return paths[0], paths[1]


def check_hub(endpoint: str) -> BigVGANUnavailableError | None:
    """None when the hub at ``endpoint`` answers a HEAD request for ``config.json``, else why not.

    The one place that reaches the network to decide availability; tests replace it.
    """
    url = hf_hub_url(REPO_ID, FILES[0], endpoint=endpoint)
    try:
        get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S)
    except HfHubHTTPError as error:
        return BigVGANUnavailableError(
            f"BigVGAN-v2 is unavailable: the Hugging Face hub refused {url} ({_first_line(error)}); "
            "try again later"
        )
    except Exception:
        # The connection-layer exception types differ between huggingface_hub versions (requests,
        # httpx, httpx2), so anything that is not an HTTP answer means "no route to the hub".
        return BigVGANUnavailableError(
            "BigVGAN-v2 is unavailable: its weights are not cached and the Hugging Face hub is "
            "unreachable; connect once to download them (~490 MB)"
        )
    return None


_hub_checks: dict[str, tuple[float, BigVGANUnavailableError | None]] = {}
_hub_checks_lock = threading.Lock()


def _download_problem(*, fresh: bool) -> BigVGANUnavailableError | None:
    """Why the weights cannot be downloaded now (hub switched off or not answering), or None.

    ``fresh`` asks the hub now; otherwise an answer younger than :data:`HUB_CHECK_TTL_S` stands.
    """
    if _hub_offline():
        return BigVGANUnavailableError(
            "BigVGAN-v2 is unavailable: its weights are not cached and HF_HUB_OFFLINE is set; "
            "unset it and connect once to download them (~490 MB)"
        )
    endpoint = _hub_endpoint()
    with _hub_checks_lock:
        checked = _hub_checks.get(endpoint)
    if not fresh and checked is not None and time.monotonic() - checked[0] < HUB_CHECK_TTL_S:
        return checked[1]
    problem = check_hub(endpoint)
    with _hub_checks_lock:
        _hub_checks[endpoint] = (time.monotonic(), problem)
    return problem


def _download(progress: ProgressCallback | None) -> tuple[Path, Path]:
    paths = []
    for filename in FILES:
        bar_class = _progress_bar_class(filename, progress) if progress is not None else None
        try:
            path = hf_hub_download(
                REPO_ID,
                filename,
                cache_dir=_hub_cache_dir(),
                endpoint=_hub_endpoint(),
                tqdm_class=bar_class,
            )
        except LocalEntryNotFoundError as error:
            raise BigVGANUnavailableError(
                f"the Hugging Face hub stopped answering while fetching BigVGAN-v2 {filename}: "
                "run again to retry"
            ) from error
        except HfHubHTTPError as error:
            raise BigVGANUnavailableError(
                f"cannot download BigVGAN-v2 {filename} from {REPO_URL} ({_first_line(error)})"
            ) from error
        except OSError as error:
            raise VocoderUnavailableError(
                f"cannot store BigVGAN-v2 {filename} in the Hugging Face cache {_hub_cache_dir()}: "
                f"{_first_line(error)} (free some space or set HF_HUB_CACHE)"
            ) from error
        except Exception as error:
            # A transfer that dies after huggingface_hub's own retries surfaces as a transport error.
            raise BigVGANUnavailableError(
                f"downloading BigVGAN-v2 {filename} failed ({_first_line(error)}): run again to retry"
            ) from error
        paths.append(Path(path))
    return paths[0], paths[1]


def _progress_bar_class(filename: str, progress: ProgressCallback) -> type[hub_tqdm]:
    """A silent tqdm for ``hf_hub_download(tqdm_class=...)`` that forwards byte counts to ``progress``.

    It subclasses huggingface_hub's tqdm because that is the interface its plain and Xet
    downloaders drive. ``update_transfer`` exists so the Xet downloader uses one bar (bytes
    written) instead of two; the network-byte count it receives is ignored.
    """

    class ProgressBar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # never draw; the caller renders progress its own way
            super().__init__(*args, **kwargs)
            self._report()

        def update(self, n: float | None = 1) -> None:
            self.n += n or 0
            self._report()

        def update_transfer(self, n: float | None = 1) -> None:
            pass

        def set_transfer_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            pass

        def _report(self) -> None:
            progress(filename, int(self.n), int(self.total or 0))

    return ProgressBar


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_bigvgan(
    local_dir: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
) -> BigVGAN:
    """The BigVGAN-v2 vocoder in eval mode, weight norm folded, gradients off.

    Built once per (files, device) and shared: callers must not modify it. Replaced files are
    picked up (the cache is keyed by each file's version).
    """
    config_path, weights_path = locate_bigvgan_files(local_dir, progress=progress)
    return _load_cached(file_version(config_path), file_version(weights_path), str(torch.device(device)))


@once_per_file_version(maxsize=2)
def _load_cached(config_file: FileVersion, weights_file: FileVersion, device: str) -> BigVGAN:
    config_path, weights_path = config_file.path, weights_file.path
    try:
        cfg = BigVGANConfig.from_json(config_path)
    except ConfigError as error:
        raise VocoderUnavailableError(f"BigVGAN-v2 config {config_path} is unusable: {error}") from error
    if (cfg.num_mels, cfg.sampling_rate, cfg.hop_size) != (N_MELS, SAMPLE_RATE, HOP_LENGTH):
        raise VocoderUnavailableError(
            f"BigVGAN config {config_path} is for {cfg.num_mels} mels at {cfg.sampling_rate} Hz, hop "
            f"{cfg.hop_size}; distillgan needs {REPO_ID} ({N_MELS} mels, {SAMPLE_RATE} Hz, hop {HOP_LENGTH})"
        )

    try:
        # weights_only: the file is only ever unpickled as tensors and containers, never as code.
        checkpoint = torch.load(weights_path, map_location=device, weights_only=True)
    except Exception as error:
        # Truncated downloads, non-torch files and refused pickles all fail here, with varied types.
        raise VocoderUnavailableError(
            f"cannot read BigVGAN-v2 weights {weights_path}: {_first_line(error)}"
        ) from error
    state = checkpoint.get("generator") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise VocoderUnavailableError(
            f"BigVGAN-v2 weights {weights_path} hold no 'generator' state dict: is it bigvgan_generator.pt?"
        )

    # Built without random init and filled by assignment: no throwaway init, no second copy.
    model = BigVGAN.for_loading(cfg)
    try:
        model.load_nvidia_state_dict(state, assign=True)
    except (ValueError, RuntimeError) as error:
        raise VocoderUnavailableError(
            f"BigVGAN-v2 weights {weights_path} do not match {config_path}: {_first_line(error)}"
        ) from error
    return model.to(device).requires_grad_(False).eval()
