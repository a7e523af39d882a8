"""One run plan for both front ends: a training request and the model's state in, a question or a
plan out.

The CLI and the UI each turn what the user typed into a :class:`TrainRequest`, hold the model's
lock, read its :class:`ModelState` and call :func:`plan_run`. It refuses what cannot run (one
clear line), asks what the user must decide (resume or start fresh? replace a trained stage?)
as a :class:`Question`, or returns a :class:`Plan`: the run's config, built once, its epochs
and whether it resumes. The front ends only answer questions (a prompt, a dialog) and run the
plan with :mod:`distillgan.training`.

Every user-facing setting is checked by the one rule in :data:`SETTINGS`, with the same message
from the command line and from the browser, before anything starts.

Import-light (no torch, no h5py at import time): the CLI's options use it for a fast ``--help``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from distillgan.config import merge
from distillgan.errors import ConfigError, CorpusError, DistillganError, ModelFileError
from distillgan.progress import resume_after

if TYPE_CHECKING:
    from distillgan.modelfile import VAERecord, VocoderRecord

Stage = Literal["vae", "vocoder"]
log = logging.getLogger(__name__)

PRECISIONS = ["32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64"]
VOCODER_RECIPES = ["vocoder", "vocoder_quick", "vocoder_tiny"]
# Where and at what precision a run computes, not what it learns: recipe settings (``train``
# keys) that a resumed VAE run may change (a resumed vocoder run may change more: see
# distillgan.training.KEPT_ON_RESUME).
COMPUTE_SETTINGS = ("precision", "accelerator")


# ---------------------------------------------------------------------------------------------
# The rules for every user-facing setting


@dataclass(frozen=True)
class Setting:
    """A number the user may set for a run; empty (None) means the recipe's value."""

    key: str  # the recipe's ``train`` key (epochs: the run's total)
    name: str  # how messages name it, in both front ends
    integer: bool
    minimum: float
    above: bool = False  # strictly above the minimum (a learning rate of 0 learns nothing)
    zero: str = ""  # what 0 means, when it means "the recipe decides" (parsed as None)

    @property
    def requirement(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        minimum = int(self.minimum) if self.integer else self.minimum
        text = f"{kind} above {minimum}" if self.above else f"{kind} of at least {minimum}"
        return f"{text} ({self.zero})" if self.zero else text

    def parse(self, text: Any) -> int | float | None:
        """The typed value (text or a number) checked; None when empty; ConfigError otherwise."""
        raw = str(text if text is not None else "").strip()
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise self._error(raw) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self._error(raw)
        if self.integer:
            if not value.is_integer():
                raise self._error(raw)
            value = int(value)
        if value < self.minimum or (self.above and value == self.minimum):
            raise self._error(raw)
        if self.zero and value == 0:
            return None
        return value

    def _error(self, raw: str) -> ConfigError:
        return ConfigError(f"{self.name} must be {self.requirement}, got '{raw}'")


SETTINGS = {
    setting.key: setting
    for setting in (
        # 0: the recipe decides (its own epochs, else adapted to the corpus), as in a recipe file;
        # a resumed run keeps its stored total (see distillgan.estimate)
        Setting("epochs", "epochs", integer=True, minimum=0, zero="0: the recipe decides"),
        Setting("lr", "learning rate", integer=False, minimum=0, above=True),
        Setting("batch_size", "batch size", integer=True, minimum=1),
        Setting("checkpoint_interval", "checkpoint interval", integer=True, minimum=1),
        Setting("preview_interval", "preview interval", integer=True, minimum=1),
        Setting("warmup_steps", "warm-up steps", integer=True, minimum=0),
    )
}


def check_choice(name: str, value: str, choices: list[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got '{value}'")
    return value


# ---------------------------------------------------------------------------------------------
# What a model file holds


@dataclass(frozen=True)
class ModelState:
    """The stages of one model file, read once per file version (callers must not mutate)."""

    path: Path
    exists: bool = False
    error: str | None = None
    vae: VAERecord | None = None  # None: no VAE stage
    vae_checkpoint: bool = False
    manifest: dict[str, Any] | None = None  # the corpus manifest; None: none that can be read
    vocoder: VocoderRecord | None = None  # None: no per-model vocoder
    vocoder_checkpoint: bool = False

    @property
    def name(self) -> str:
        from distillgan.modelfile import model_name  # not at import time: the CLI's --help stays light

        return model_name(self.path)

    @property
    def vae_complete(self) -> bool:
        return self.vae is not None and self.vae.complete

    @property
    def can_train_vocoder(self) -> bool:
        """A trained VAE (not a run stopped part-way) and the corpus manifest the vocoder learns
        from. A summary that cannot be read is not taken for an unfinished run: loading the VAE
        and its manifest say what is wrong with them."""
        return self.vae is not None and self.vae.status != "partial" and self.manifest is not None

    @property
    def vocoder_complete(self) -> bool:
        return self.vocoder is not None and self.vocoder.complete

    def record(self, stage: Stage) -> VAERecord | VocoderRecord | None:
        return self.vae if stage == "vae" else self.vocoder

    def saved_run(self, stage: Stage) -> int | None:
        """The epochs completed by a saved training state of ``stage`` (what resuming continues
        after), or None without one. A count the file does not hold (untrusted) is 0."""
        if not (self.vae_checkpoint if stage == "vae" else self.vocoder_checkpoint):
            return None
        record = self.record(stage)
        return (record.epochs_completed if record is not None else None) or 0


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
    from distillgan.modelfile import dataset_record, open_model, vae_record, vocoder_record

    path = Path(path_text)
    try:
        reader = open_model(path)
        sections = set(reader.sections())
        return ModelState(
            path,
            exists=True,
            vae=vae_record(reader) if "vae" in sections else None,
            vae_checkpoint="vae_checkpoint" in sections,
            manifest=dataset_record(reader).manifest if "dataset" in sections else None,
            vocoder=vocoder_record(reader) if "vocoder" in sections else None,
            vocoder_checkpoint="vocoder_checkpoint" in sections,
        )
    except DistillganError as exc:
        return ModelState(path, exists=True, error=str(exc))


def lock_model(path: Path, owner: str) -> Any:
    """The model's writer lock, taken before anything is asked: a model in use is refused at once,
    naming its holder (:class:`~distillgan.errors.ModelLockedError`), never after a question."""
    from distillgan.modelfile import ModelLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DistillganError(f"cannot create the models folder {path.parent} ({exc.strerror})") from exc
    return ModelLock(path, owner=owner).acquire()


# ---------------------------------------------------------------------------------------------
# Requests, questions and plans


@dataclass(frozen=True)
class Terms:
    """How a front end names the ways forward in the messages the plan writes (its flags, its
    fields): the decision is the plan's, the words are the front end's."""

    go_on: str  # a resumed run with no epochs left ({done}: the epochs trained)
    no_resume: str  # there is no saved run to resume
    start_over: str  # a saved run that cannot be resumed
    train_vae_first: str  # a vocoder asked for before the VAE is trained


@dataclass(frozen=True)
class Question:
    """What the user must decide before the run: ``kind`` "resume" (answers "resume" or "fresh"),
    "replace" (answer "replace"; dismissing it keeps the model as it is), or "start" (the UI's
    go-ahead for a run estimated over an hour)."""

    kind: Literal["resume", "replace", "start"]
    text: str
    options: tuple[tuple[str, str], ...]  # (button label, answer for TrainRequest.answer)
    dismiss: str = "Cancel"
    kept: str = "nothing changed"  # said when a replace question is declined


@dataclass(frozen=True)
class TrainRequest:
    """One press of a Train button or one command line: the stage, the model and the settings."""

    stage: Stage
    model_path: Path
    corpus_dir: Path | None = None  # a new model's corpus folder (VAE only)
    # overrides of the recipe's train section, precision and accelerator included
    train: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    recipe: str = "vocoder"  # built-in vocoder recipe
    recipe_file: Path | None = None
    audio_dir: Path | None = None  # where the corpus is now, if it moved
    accept_corpus_changes: bool = False
    bigvgan_dir: Path | None = None  # BigVGAN-v2's files, to score it at the end of a vocoder run
    resume: bool | None = None  # None until asked
    replace: bool = False  # replacing a trained stage (or the whole model) is confirmed

    def answer(self, choice: str) -> TrainRequest:
        if choice == "resume":
            return dataclasses.replace(self, resume=True)
        if choice == "fresh":
            return dataclasses.replace(self, resume=False)
        if choice == "replace":
            return dataclasses.replace(self, replace=True)
        raise ValueError(f"unknown answer {choice!r}")


@dataclass(frozen=True)
class Plan:
    """A run ready to start: its config (built once, here), epochs and whether it resumes."""

    request: TrainRequest
    cfg: Any  # the run's recipe: a VAEConfig or a VocoderConfig (distillgan.recipes)
    epochs: int | None  # the vocoder's total (None: the recipe or the corpus decides); the VAE's is in cfg
    resume: bool
    ignored: tuple[str, ...] = ()  # asked-for settings (request keys) a resumed run keeps as they were
    steps_done: int = 0  # a resumed run's steps already trained

    @property
    def stage(self) -> Stage:
        return self.request.stage

    def note(self, name: Callable[[str], str]) -> str | None:
        """What resuming ignored, each setting named as the front end names it."""
        if not self.ignored:
            return None
        return f"resuming keeps the run's own recipe ({', '.join(name(k) for k in self.ignored)} ignored)"


def plan_run(request: TrainRequest, state: ModelState, terms: Terms) -> Question | Plan:
    """Refuse (DistillganError), ask (a :class:`Question`) or plan the run ``request`` asks for.

    Call it with the model's lock held (:func:`lock_model`) and ``state`` read under it, so a model
    in use is refused before anything is asked and nothing changes between question and run.
    """
    _refuse(request, state, terms)
    question = _question(request, state)
    if question is not None:
        return question
    return _plan(request, state, terms)


def _refuse(request: TrainRequest, state: ModelState, terms: Terms) -> None:
    # what a menu offers (a form's dropdown, a Click choice) is checked here too: a forged value
    # gets the same line from both front ends
    check_choice("precision", request.train.get("precision", PRECISIONS[0]), PRECISIONS)
    if request.stage == "vocoder":
        check_choice("recipe", request.recipe, VOCODER_RECIPES)
    if state.error:
        raise ModelFileError(state.error)
    if request.stage == "vae":
        if request.corpus_dir is None and state.manifest is None:
            raise CorpusError(
                f"model '{state.name}' has no corpus manifest: create it again from its corpus folder"
            )
        if request.corpus_dir is not None and not request.corpus_dir.exists():
            raise CorpusError(f"audio folder not found: {request.corpus_dir}")
    elif not state.can_train_vocoder:
        raise DistillganError(f"model '{state.name}' has no trained VAE yet: {terms.train_vae_first}")
    if request.resume and state.saved_run(request.stage) is None:
        raise DistillganError(
            f"model '{state.name}' has no {request.stage} training state to resume: {terms.no_resume}"
        )


def _question(request: TrainRequest, state: ModelState) -> Question | None:
    """What the user must decide before this run starts, asked every time (None: nothing)."""
    done = state.saved_run(request.stage)
    if done is not None and request.resume is None:
        text = f"{resume_after(done)} or start fresh?"
        if request.stage == "vae":
            text = f"Model '{state.name}' has an unfinished VAE run. {text}"
        return Question("resume", text, ((resume_after(done), "resume"), ("Start fresh", "fresh")))
    if (done is not None and request.resume) or request.replace:
        return None
    if request.stage == "vae" and state.exists:
        stages = "VAE and vocoder are" if state.vocoder is not None else "VAE is"
        return Question(
            "replace",
            f"Model '{state.name}' already exists. Replace it? Its {stages} trained again from scratch.",
            (("Replace the model", "replace"),),
            dismiss="Keep it",
            kept="kept the existing model; nothing changed",
        )
    if request.stage == "vocoder" and state.vocoder_complete:
        return Question(
            "replace",
            "This model already has a trained vocoder. Replace it?",
            (("Replace it", "replace"),),
            dismiss="Keep it",
            kept="kept the existing vocoder; nothing changed",
        )
    return None


def _plan(request: TrainRequest, state: ModelState, terms: Terms) -> Plan:
    resume = bool(request.resume) and state.saved_run(request.stage) is not None
    asked = [*request.train, *(["epochs"] if request.epochs else [])]
    if request.recipe_file is not None:
        asked.append("recipe_file")
    if request.stage == "vae":
        from distillgan.recipes import load_vae_config

        vae = state.vae
        if resume:
            stored = vae.config if vae is not None else None  # untrusted: validated here
            if vae is None or not stored:
                raise DistillganError(
                    f"model '{state.name}' has no usable stored VAE config to resume with: {terms.start_over}"
                )
            # the stored run's recipe: its network and optimisation are in the saved state; only
            # where and at what precision it computes may change, as for the vocoder
            changed = {k: v for k, v in request.train.items() if k in COMPUTE_SETTINGS}
            cfg = load_vae_config(None, merge(stored, {"train": changed}) if changed else stored)
            ignored = tuple(k for k in asked if k not in COMPUTE_SETTINGS)
            return Plan(request, cfg, None, True, ignored, vae.steps or 0)
        train = {**request.train, **({"epochs": request.epochs} if request.epochs else {})}
        return Plan(request, load_vae_config(request.recipe_file, {"train": train}), None, False)

    from distillgan.recipes import load_vocoder_config

    if not resume:
        cfg = load_vocoder_config(request.recipe_file, {"train": request.train}, recipe=request.recipe)
        return Plan(request, cfg, request.epochs, False)
    from distillgan.modelfile import VocoderRecord
    from distillgan.training import resumed_vocoder_run

    vocoder = state.vocoder or VocoderRecord()  # a training state without its summary: nothing to keep
    run = resumed_vocoder_run(vocoder, request.train, request.epochs, go_on=terms.go_on)
    ignored = [*run.ignored, *(["recipe_file"] if request.recipe_file is not None else [])]
    steps = vocoder.steps or 0
    return Plan(request, run.cfg, run.total_epochs, True, tuple(ignored), steps)


def estimate(plan: Plan, corpus: Any, options: Any) -> Any:
    """The run's length and measured time estimate (:func:`distillgan.estimate.estimate_run`),
    for the plan as it will run; None when measuring failed for a reason that is no user error
    (logged): an estimate never stops a run. A user error (ConfigError: e.g. an accelerator
    this machine lacks) is raised, as the run itself would raise it."""
    from distillgan.estimate import estimate_run

    try:
        return estimate_run(
            plan.stage, plan.cfg, corpus, options=options, epochs=plan.epochs, steps_done=plan.steps_done
        )
    except DistillganError:
        raise
    except Exception:
        log.warning("could not estimate the %s run's time", plan.stage, exc_info=True)
        return None


NO_ESTIMATE = "No time estimate: measuring a training step failed (see the log)."


# the settings a form shows for a run, beside the numbers of SETTINGS
SHOWN = (*SETTINGS, "precision", "init", "keep_checkpoint")


def run_settings(cfg: Any, epochs: int | None) -> dict[str, Any]:
    """A run's real settings as the forms name them (absent: the stage has no such setting)."""
    shown = {key: getattr(cfg.train, key) for key in SHOWN if hasattr(cfg.train, key)}
    return {**shown, "epochs": epochs or cfg.train.epochs or None}


def saved_settings(state: ModelState, stage: Stage) -> dict[str, Any] | None:
    """The settings of ``stage``'s saved unfinished run in the model file (its stored recipe, its
    total epochs, and the built-in vocoder recipe it matches, if any); None without one, or when
    the stored config is unusable (resuming says why)."""
    from distillgan.recipes import load_vae_config, load_vocoder_config

    try:
        if stage == "vae":
            vae = state.vae
            if vae is None or vae.complete or not state.vae_checkpoint:
                return None
            cfg = load_vae_config(None, vae.config or {})
            return run_settings(cfg, vae.total_epochs)
        vocoder = state.vocoder
        if vocoder is None or vocoder.complete:
            return None
        cfg = load_vocoder_config(
            None, {"generator": vocoder.config or {}, "train": vocoder.train_config or {}}
        )
    except DistillganError:
        return None
    settings = run_settings(cfg, vocoder.total_epochs)
    for recipe in VOCODER_RECIPES:  # the built-in recipe whose shape and budget the run has
        builtin = load_vocoder_config(recipe=recipe)
        t, b = cfg.train, builtin.train
        if builtin.generator == cfg.generator and (t.segment_samples, t.steps_per_epoch) == (
            b.segment_samples,
            b.steps_per_epoch,
        ):
            settings["recipe"] = recipe
            break
    return settings
