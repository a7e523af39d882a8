"""Training runs started from the UI: one background worker per run.

What to ask and what to run is :func:`distillgan.runs.plan_run`'s decision, the same as for
``distillgan train vae|vocoder``; the work itself is :func:`distillgan.training.train_vae` /
:func:`~distillgan.training.train_vocoder`, run in a thread that holds the model's
:class:`~distillgan.modelfile.ModelLock` and collects the run's
:class:`~distillgan.progress.ProgressEvent` s for the tabs to poll.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from distillgan.errors import CorpusError, DistillganError
from distillgan.modelfile import ModelLock, model_name
from distillgan.progress import CancelToken, ProgressEvent
from distillgan.runs import (
    NO_ESTIMATE,
    SETTINGS,
    ModelState,
    Plan,
    Question,
    Stage,
    Terms,
    TrainRequest,
    estimate,
    lock_model,
    plan_run,
    read_model_state,
)

__all__ = ["ModelState", "Question", "Stage", "TrainRequest", "model_name", "read_model_state"]

# "confirming": prepared, its length estimated over an hour: waits for the user's go-ahead
JobState = Literal["preparing", "confirming", "running", "finished", "cancelled", "failed"]
ACTIVE: tuple[JobState, ...] = ("preparing", "confirming", "running")

UI_CORPUS_HINT = (
    "here: Advanced → 'Corpus folder, if it moved' or 'Train even if corpus files are missing or changed'"
)
# Chart history kept per run; older points are thinned, never the newest.
MAX_POINTS = 20_000

log = logging.getLogger(__name__)


UI_TERMS = Terms(
    go_on="set Epochs above {done} to train on, or start fresh",
    no_resume="start again",
    start_over="start fresh",
    train_vae_first="train its VAE to the end first",
)


def setting_name(key: str) -> str:
    """A request key as the form's messages name it."""
    return SETTINGS[key].name if key in SETTINGS else key.replace("_", " ")


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
    estimate: str | None = None  # the run's length and estimated time (distillgan.estimate)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


class Job:
    """A training run of a :class:`~distillgan.runs.Plan`: loads the corpus, trains, and records
    every progress event."""

    def __init__(self, job_id: int, plan: Plan, state: ModelState, lock: ModelLock) -> None:
        self.id = job_id
        self.plan = plan
        self.request = plan.request
        self.model_path = plan.request.model_path
        self.stage = plan.stage
        self.lock = lock
        self.cancel_token = CancelToken()
        self.resumed = plan.resume
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
        self._estimate: str | None = None  # the run's length and estimated time, once measured
        self._go_ahead = threading.Event()
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
                estimate=self._estimate,
            )

    @property
    def active(self) -> bool:
        with self._mutex:
            return self._state in ACTIVE

    def cancel(self) -> None:
        self.cancel_token.cancel("cancelled in the UI")
        self._go_ahead.set()  # a run waiting for its go-ahead ends now, untouched
        self._update()

    def confirm(self) -> None:
        """The user's go-ahead for a run estimated over an hour."""
        self._go_ahead.set()

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
        from distillgan.corpus import FEW_FILES_WARNING_THRESHOLD, load_corpus, load_model_corpus
        from distillgan.training import TrainerOptions, run_plan

        request, state = self.request, self._state_at_start
        note = self.plan.note(setting_name)
        if note:
            self.note(f"{note[0].upper()}{note[1:]}.")

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
        options = TrainerOptions(devices=1)
        length = estimate(self.plan, corpus, options)
        text = length.text() if length is not None else NO_ESTIMATE
        self._update(note=text, estimate=text)
        if (
            length is not None and length.needs_confirmation
        ):  # the user says go (or cancels) first; the lock stays held
            self._update(state="confirming")
            self._go_ahead.wait()
        if self.cancel_token.cancelled:
            return {"state": "cancelled"}
        self._update(state="running")
        # a new VAE replacing a model: the run's first save replaces it (kept whole until then)
        result = run_plan(
            self.plan,
            corpus,
            lock=self.lock,
            listener=self.listener,
            cancel=self.cancel_token,
            options=options,
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
        """The model's UI run that is preparing or running, if any (of either stage)."""
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
        """Take the model's lock, then ask the next question or start the planned run in the
        background.

        The lock comes first and is the only arbiter: a second tab, a second app or a CLI run on
        the same model gets its holder's description (ModelLockedError) at once, before any
        question, instead of a second writer.
        """
        path = request.model_path
        lock = lock_model(path, f"the distillgan UI training its {request.stage}")
        try:
            state = read_model_state(path)  # read under the lock: nothing changes before the run
            outcome = plan_run(request, state, UI_TERMS)
            if isinstance(outcome, Question):
                lock.release()  # asked without holding the model: the answer takes the lock again
                return outcome
            job = Job(next(self._ids), outcome, state, lock)
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

    def confirm(self, path: Path, stage: Stage, job_id: int) -> bool:
        """Start the run ``job_id`` that waits for its go-ahead (False: it no longer waits)."""
        job = self.job(path, stage)
        if job is None or job.id != job_id or not job.active:
            return False
        job.confirm()
        return True

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
