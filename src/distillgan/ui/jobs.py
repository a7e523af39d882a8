"""Training runs started from the UI: what to ask before a run, and one background worker per run.

The decisions mirror ``distillgan train vae|vocoder`` (resume or start fresh, replace a trained
stage, which stored config a resumed run keeps); the work itself is
:func:`distillgan.training.train_vae` / :func:`~distillgan.training.train_vocoder`, run in a
thread that holds the model's :class:`~distillgan.modelfile.ModelLock` and collects the
run's :class:`~distillgan.progress.ProgressEvent` s for the tabs to poll.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from distillgan.config import json_attr
from distillgan.errors import CorpusError, DistillganError, ModelFileError
from distillgan.modelfile import SUFFIX, ModelLock, open_model
from distillgan.progress import CancelToken, ProgressEvent

Stage = Literal["vae", "vocoder"]
JobState = Literal["preparing", "running", "finished", "cancelled", "failed"]

UI_CORPUS_HINT = (
    "here: Advanced → 'Corpus folder, if it moved' or 'Train even if corpus files are missing or changed'"
)
# Chart history kept per run; older points are thinned, never the newest.
MAX_POINTS = 20_000

log = logging.getLogger(__name__)


def model_name(path: Path) -> str:
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name


# ---------------------------------------------------------------------------------------------
# What a model file holds


@dataclass(frozen=True)
class ModelState:
    """The stages of one model file, read once per file version (callers must not mutate)."""

    path: Path
    exists: bool = False
    error: str | None = None
    vae_attrs: dict[str, Any] | None = None
    vae_checkpoint: bool = False
    manifest: dict[str, Any] | None = None
    vocoder: dict[str, Any] | None = None
    vocoder_checkpoint: bool = False

    @property
    def name(self) -> str:
        return model_name(self.path)

    @property
    def vae_summary(self) -> dict[str, Any] | None:
        return None if self.vae_attrs is None else json_attr(self.vae_attrs.get("summary"))

    @property
    def vae_complete(self) -> bool:
        return (self.vae_summary or {}).get("status") == "complete"

    @property
    def can_train_vocoder(self) -> bool:
        """A trained (finished) VAE and the corpus manifest the vocoder learns from."""
        return self.vae_complete and self.manifest is not None

    @property
    def vocoder_complete(self) -> bool:
        return self.vocoder is not None and self.vocoder.get("status") == "complete"

    def resume_epoch(self, stage: Stage) -> int | None:
        """The epoch a saved training state of ``stage`` resumes from, or None without one."""
        from distillgan.training import resume_epoch

        if stage == "vae":
            summary = self.vae_summary
            return resume_epoch(summary.get("epochs_completed")) if self.vae_checkpoint and summary else None
        if not self.vocoder_checkpoint:
            return None
        return resume_epoch((self.vocoder or {}).get("epochs"))


def read_model_state(path: Path) -> ModelState:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ModelState(path)
    except OSError as exc:
        return ModelState(path, exists=True, error=f"cannot read {path} ({exc.strerror})")
    return _read_state(str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)


@lru_cache(maxsize=64)
def _read_state(path_text: str, mtime_ns: int, size: int, inode: int) -> ModelState:
    path = Path(path_text)
    try:
        reader = open_model(path)
        sections = set(reader.sections())
        return ModelState(
            path,
            exists=True,
            vae_attrs=reader.attrs("vae") if "vae" in sections else None,
            vae_checkpoint="vae_checkpoint" in sections,
            manifest=json_attr(reader.attrs("dataset").get("manifest")) or None
            if "dataset" in sections
            else None,
            vocoder=reader.attrs("vocoder") if "vocoder" in sections else None,
            vocoder_checkpoint="vocoder_checkpoint" in sections,
        )
    except DistillganError as exc:
        return ModelState(path, exists=True, error=str(exc))


# ---------------------------------------------------------------------------------------------
# Requests and the questions asked before a run


@dataclass(frozen=True)
class Question:
    text: str
    options: tuple[tuple[str, str], ...]  # (button label, answer for TrainRequest.answer)
    dismiss: str = "Cancel"


@dataclass(frozen=True)
class TrainRequest:
    """One press of a Train button: the stage, the model and the form's values."""

    stage: Stage
    model_path: Path
    corpus_dir: Path | None = None  # a new model's corpus folder (VAE only)
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the recipe's train section
    epochs: int | None = None
    recipe: str = "vocoder"  # built-in vocoder recipe
    recipe_file: Path | None = None
    accelerator: str | None = None
    audio_dir: Path | None = None  # where the corpus is now, if it moved
    accept_corpus_changes: bool = False
    bigvgan_dir: Path | None = None  # BigVGAN-v2's files, to score it at the end of a vocoder run
    resume: bool | None = None  # None until asked
    replace: bool = False

    def answer(self, choice: str) -> TrainRequest:
        if choice == "resume":
            return dataclasses.replace(self, resume=True)
        if choice == "fresh":
            return dataclasses.replace(self, resume=False)
        if choice == "replace":
            return dataclasses.replace(self, replace=True)
        raise ValueError(f"unknown answer {choice!r}")


def question_for(request: TrainRequest, state: ModelState) -> Question | None:
    """What the user must decide before this run starts, asked every time (None: nothing)."""
    epoch = state.resume_epoch(request.stage)
    if epoch is not None and request.resume is None:
        text = f"Resume from epoch {epoch} or start fresh?"
        if request.stage == "vae":
            text = f"Model **{state.name}** has an unfinished VAE run. {text}"
        return Question(text, ((f"Resume from epoch {epoch}", "resume"), ("Start fresh", "fresh")))
    resuming = epoch is not None and bool(request.resume)
    if resuming or request.replace:
        return None
    if request.stage == "vae" and state.exists:
        stages = "VAE and vocoder are" if state.vocoder is not None else "VAE is"
        return Question(
            f"Model **{state.name}** already exists. Replace it? Its {stages} trained again from scratch.",
            (("Replace the model", "replace"),),
            dismiss="Keep it",
        )
    if request.stage == "vocoder" and state.vocoder_complete:
        return Question(
            "This model already has a trained vocoder. Replace it?",
            (("Replace it", "replace"),),
            dismiss="Keep it",
        )
    return None


def check_request(request: TrainRequest, state: ModelState) -> None:
    """Refuse, with one clear line, a run that cannot start; validates the recipe too."""
    if state.error:
        raise ModelFileError(state.error)
    if request.stage == "vae":
        if request.corpus_dir is None and state.manifest is None:
            raise CorpusError(
                f"model '{state.name}' has no corpus manifest: create it again from its corpus folder"
            )
        if request.corpus_dir is not None and not request.corpus_dir.exists():
            raise CorpusError(f"corpus folder {request.corpus_dir} does not exist")
    elif not state.can_train_vocoder:
        raise DistillganError(f"model '{state.name}' has no trained VAE yet: train its VAE to the end first")
    if request.resume and state.resume_epoch(request.stage) is None:
        raise DistillganError(
            f"model '{state.name}' no longer has a saved {request.stage} training state: start again"
        )
    build_config(request, state, resume=False)


def build_config(
    request: TrainRequest, state: ModelState, *, resume: bool
) -> tuple[Any, int | None, list[str]]:
    """The run's recipe, its total epochs (None: the recipe decides) and notes for the user."""
    notes: list[str] = []
    if request.stage == "vae":
        from distillgan.config import load_vae_config

        if resume:
            if request.train or request.epochs:
                notes.append("Resuming keeps the run's own settings.")
            return load_vae_config(None, json_attr((state.vae_attrs or {}).get("config"))), None, notes
        train = {**request.train, **({"epochs": request.epochs} if request.epochs else {})}
        return load_vae_config(request.recipe_file, {"train": train}), None, notes

    from distillgan.lightning_modules.hifigan import load_vocoder_config

    if not resume:
        cfg = load_vocoder_config(request.recipe_file, {"train": request.train}, recipe=request.recipe)
        return cfg, request.epochs, notes
    from distillgan.training import resumed_vocoder_run

    run = resumed_vocoder_run(
        state.vocoder or {},
        request.train,
        request.epochs,
        go_on="set Epochs above {done} to train on, or start fresh",
    )
    if run.ignored:
        notes.append(f"Resuming keeps the run's own {', '.join(k.replace('_', ' ') for k in run.ignored)}.")
    return run.cfg, run.total_epochs, notes


# ---------------------------------------------------------------------------------------------
# One run in a background thread


@dataclass(frozen=True)
class JobView:
    """A consistent copy of a job for rendering."""

    id: int
    stage: Stage
    model_name: str
    state: JobState
    version: int
    resumed: bool
    cancel_requested: bool
    last: ProgressEvent | None
    points: tuple[tuple[int, str, float], ...]
    log_dir: str | None
    saved: ProgressEvent | None  # the last checkpoint really written
    result: Any | None  # distillgan.training.RunResult
    error: str | None
    notes: tuple[str, ...]
    skipped: tuple[str, ...] = ()  # the corpus's skipped files, each with its reason

    @property
    def active(self) -> bool:
        return self.state in ("preparing", "running")


class Job:
    """A training run: prepares the corpus and recipe, trains, and records every progress event."""

    def __init__(self, job_id: int, request: TrainRequest, state: ModelState, lock: ModelLock) -> None:
        self.id = job_id
        self.request = request
        self.model_path = request.model_path
        self.stage = request.stage
        self.lock = lock
        self.cancel_token = CancelToken()
        self.resumed = bool(request.resume) and state.resume_epoch(request.stage) is not None
        self._state_at_start = state
        from distillgan.training import run_dir

        # a model being created owns the run folder it starts: if the run never saves the model
        # (a corpus with nothing usable, a failure or cancel before the first save), it goes too
        runs = run_dir(self.model_path)
        self._new_run_dir = None if state.exists or runs.exists() else runs
        self._mutex = threading.Lock()
        self._state: JobState = "preparing"
        self._version = 0
        self._last: ProgressEvent | None = None
        self._points: list[tuple[int, str, float]] = []
        self._log_dir: str | None = None
        self._saved: ProgressEvent | None = None
        self._result: Any = None
        self._error: str | None = None
        self._notes: list[str] = []
        self._skipped: list[str] = []  # every file the corpus left out, one line each
        self._thread = threading.Thread(
            target=self._run, name=f"distillgan-{self.stage}-{model_name(self.model_path)}", daemon=True
        )

    # -- what the tabs read

    def view(self) -> JobView:
        with self._mutex:
            return JobView(
                id=self.id,
                stage=self.stage,
                model_name=model_name(self.model_path),
                state=self._state,
                version=self._version,
                resumed=self.resumed,
                cancel_requested=self.cancel_token.cancelled,
                last=self._last,
                points=tuple(self._points),
                log_dir=self._log_dir,
                saved=self._saved,
                result=self._result,
                error=self._error,
                notes=tuple(self._notes),
                skipped=tuple(self._skipped),
            )

    @property
    def active(self) -> bool:
        with self._mutex:
            return self._state in ("preparing", "running")

    def cancel(self) -> None:
        self.cancel_token.cancel("cancelled in the UI")
        self._update()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- what the run writes

    def listener(self, event: ProgressEvent) -> None:
        earlier: list[tuple[int, str, float]] = []
        if event.kind == "start" and self.resumed and event.path:
            # a resumed run's charts go on from where the runs before it stopped
            earlier = self._logged_history(event.path, event.step)
        with self._mutex:
            if event.kind == "start":
                self._log_dir = event.path or self._log_dir
                self._points[:0] = earlier
            elif event.kind == "checkpoint":
                self._saved = event
            elif event.kind == "error":
                self._error = event.message or self._error
            elif event.kind in ("step", "epoch", "end"):
                self._last = event
                prefix = "train/" if event.kind == "step" else "val/" if event.kind == "epoch" else None
                if prefix:
                    self._points.extend(
                        (event.step, key, value)
                        for key, value in event.metrics.items()
                        if key.startswith(prefix)
                    )
                    if len(self._points) > MAX_POINTS:
                        half = len(self._points) // 2
                        self._points = self._points[:half:2] + self._points[half:]
            self._version += 1

    def _logged_history(self, log_dir: str, step: int) -> list[tuple[int, str, float]]:
        from distillgan.training import logged_history

        try:
            return logged_history(log_dir, self.stage, step)[-MAX_POINTS // 2 :]
        except Exception:  # unreadable logs cost the chart its past, never the run
            log.warning("could not read earlier training logs beside %s", log_dir, exc_info=True)
            return []

    def note(self, text: str) -> None:
        self._update(note=text)

    def _update(self, note: str | None = None, **changes: Any) -> None:
        with self._mutex:
            if note:
                self._notes.append(note)
            for key, value in changes.items():
                setattr(self, f"_{key}", value)
            self._version += 1

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        outcome: dict[str, Any] = {"state": "failed", "error": "training stopped unexpectedly"}
        try:
            outcome = self._train()
        except DistillganError as exc:
            outcome = {"state": "failed", "error": str(exc)}
        except Exception as exc:  # a bug or a library failure: show it, never hang on "running"
            log.exception("training %s of %s failed", self.stage, self.model_path)
            outcome = {"state": "failed", "error": f"unexpected error: {type(exc).__name__}: {exc}"}
        finally:
            if self._new_run_dir is not None and not self.model_path.exists():
                shutil.rmtree(self._new_run_dir, ignore_errors=True)
            # before the final state, so a tab seeing it can start again at once; with no model
            # file (a failed creation) the lock file goes too
            self.lock.release()
        self._update(**outcome)

    def _train(self) -> dict[str, Any]:
        from distillgan.audio import FEW_FILES_WARNING_THRESHOLD, load_corpus
        from distillgan.training import TrainerOptions, load_model_corpus, train_vae, train_vocoder

        request, state = self.request, self._state_at_start
        cfg, epochs, notes = build_config(request, state, resume=self.resumed)
        for text in notes:
            self.note(text)

        def skipped(verdict: Any) -> None:
            self._update(skipped=[*self._skipped, f"{verdict.path}: {verdict.reason}"])

        if request.stage == "vae" and request.corpus_dir is not None and not self.resumed:
            corpus = load_corpus(request.corpus_dir, on_skip=skipped)
        else:
            try:
                corpus = load_model_corpus(
                    state.manifest or {},
                    audio_dir=request.audio_dir,
                    accept_changes=request.accept_corpus_changes,
                    on_skip=skipped,
                )
            except CorpusError as exc:
                if request.stage == "vae":
                    raise
                raise CorpusError(f"{exc} ({UI_CORPUS_HINT})") from exc
        self.note(f"Corpus: {corpus.summary()}")
        if len(corpus.files) < FEW_FILES_WARNING_THRESHOLD:
            self.note(
                f"Only {len(corpus.files)} usable file(s): {FEW_FILES_WARNING_THRESHOLD}+ teach a model more."
            )
        if self.cancel_token.cancelled:
            return {"state": "cancelled"}
        # one device: a UI thread cannot host DDP's worker processes (use the CLI for several GPUs)
        options = TrainerOptions(accelerator=request.accelerator or cfg.train.accelerator, devices=1)
        self._update(state="running")
        common = {
            "lock": self.lock,
            "listener": self.listener,
            "cancel": self.cancel_token,
            "options": options,
            "resume": self.resumed,
        }
        if request.stage == "vae":
            # replacing a model: the run's first save replaces it (kept whole until then)
            result = train_vae(corpus, self.model_path, cfg, **common)
        else:
            result = train_vocoder(
                corpus, self.model_path, cfg, epochs=epochs, bigvgan_dir=request.bigvgan_dir, **common
            )
        return {"state": "finished", "result": result}


class JobManager:
    """The runs of one UI process, shared by every browser tab: one current run per model and stage."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._jobs: dict[tuple[Path, Stage], Job] = {}
        self._mutex = threading.Lock()
        self._ids = itertools.count(1)

    def job(self, path: Path, stage: Stage) -> Job | None:
        with self._mutex:
            return self._jobs.get((path, stage))

    def active_job(self, path: Path) -> Job | None:
        with self._mutex:
            jobs = [job for (p, _), job in self._jobs.items() if p == path]
        return next((job for job in jobs if job.active), None)

    def active_paths(self) -> list[Path]:
        with self._mutex:
            jobs = list(self._jobs.values())
        return [job.model_path for job in jobs if job.active]

    def forget(self, path: Path) -> None:
        """Drop the finished runs of a model that was deleted or renamed: a new model of that name
        starts with a clean page."""
        with self._mutex:
            for key in [key for key, job in self._jobs.items() if key[0] == path and not job.active]:
                del self._jobs[key]

    def submit(self, request: TrainRequest) -> Question | Job:
        """Ask the next question, or take the model's lock and start the run in the background.

        The lock is the only arbiter: a second tab, a second app or a CLI run on the same model
        gets its holder's description (ModelLockedError) instead of a second writer.
        """
        path = request.model_path
        state = read_model_state(path)
        check_request(request, state)
        question = question_for(request, state)
        if question is not None:
            return question
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = ModelLock(path, owner=f"the distillgan UI training its {request.stage}").acquire()
        try:
            state = read_model_state(path)  # it may have changed before we held the lock
            check_request(request, state)
            question = question_for(request, state)
            if question is not None:
                lock.release()
                return question
            job = Job(next(self._ids), request, state, lock)
            job.start()  # from here on the job owns the lock and releases it when it ends
        except BaseException:
            if lock.held:
                lock.release()
            raise
        with self._mutex:
            self._jobs[(path, request.stage)] = job
            if request.stage == "vae" and not job.resumed:
                self._jobs.pop((path, "vocoder"), None)  # that model's vocoder is being replaced
        return job

    def cancel(self, path: Path, stage: Stage) -> bool:
        job = self.job(path, stage)
        if job is None or not job.active:
            return False
        job.cancel()
        return True

    def shutdown(self, timeout: float = 120.0) -> None:
        """Cancel every run (each saves its checkpoint) and wait for them to finish."""
        with self._mutex:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.active:
                job.cancel()
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))
