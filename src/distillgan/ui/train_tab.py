"""The Train tab: pick or create a model, train its VAE, then its vocoder, and watch both live.

Every handler returns a dict of the components it changes. A ``gr.Timer`` polls the runs of
the selected model; each part of the page is re-sent only when its signature (job version,
file version, preview files...) changed, so an idle tab costs a directory listing per tick.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from distillgan import library, runs
from distillgan.config import builtin_recipe
from distillgan.errors import CorpusError, DistillganError, ModelFileError
from distillgan.modelfile import list_models, new_model_path, resolve_model
from distillgan.runs import PRECISIONS, SETTINGS
from distillgan.training import run_dir
from distillgan.ui import views
from distillgan.ui.corpus import CorpusPanel
from distillgan.ui.jobs import Job, JobManager, Question, Stage, TrainRequest, model_name, read_model_state

log = logging.getLogger(__name__)

NEW = "__new__"
GO_AHEAD = "go-ahead"  # a section's pending answer: the go-ahead of a run estimated over an hour
NEW_LABEL = "+ New model from a corpus folder…"
PREVIEW_PAIRS = 4  # reference + preview players; the recipes hold out up to 4 clips
CHART_REFRESH_S = 2.0
DEFAULT = "default"
PRECISION_CHOICES = [("Recipe default", DEFAULT), *[(p, p) for p in PRECISIONS]]
DEVICE_CHOICES = [
    ("Recipe default", DEFAULT),
    ("Auto (a GPU if there is one)", "auto"),
    ("CPU", "cpu"),
    ("GPU", "gpu"),
]
VOCODER_RECIPES = [("Default (best quality)", "vocoder"), ("Quick (CPU, minutes)", "vocoder_quick")]


# form key -> label; the rules are the library's (distillgan.runs.SETTINGS)
NUMBER_FIELDS = {
    "epochs": "Epochs",
    "lr": "Learning rate",
    "batch_size": "Batch size",
    "checkpoint_interval": "Save every N epochs",
    "preview_interval": "Audio preview every N epochs",
    "warmup_steps": "Warm-up steps (generator only)",
}


def _recipe_hint(recipe: str, key: str) -> str:
    value = builtin_recipe(recipe).get("train", {}).get(key)
    if key == "epochs" and not value:
        return "auto: adapts to the corpus"
    return f"recipe: {value}"


def _number_field(recipe: str, key: str) -> gr.Textbox:
    """An optional number: empty means the recipe's value, shown as the placeholder."""
    label = NUMBER_FIELDS[key]
    return gr.Textbox(
        label=label, placeholder=_recipe_hint(recipe, key), elem_id=f"{recipe}-{key}".replace("_", "-")
    )


def _chart(title: str, x_title: str, y_title: str, elem_id: str) -> gr.LinePlot:
    """A live line chart of (step, value, series) points; shown once a run has points."""
    return gr.LinePlot(
        x="step",
        y="value",
        color="series",
        title=title,
        x_title=x_title,
        y_title=y_title,
        height=250,
        visible=False,
        elem_id=elem_id,
    )


def _message(exc: Exception) -> str:
    return f"⚠ {exc}"


def _storage_markdown(path: Path | None) -> str:
    """What takes the model's space (as `distillgan model info` says it), under the manage buttons."""
    if path is None:
        return ""
    try:
        parts = library.storage(path)
    except DistillganError:
        return ""
    text = "Space: " + library.storage_text(parts)  # names and sizes only: nothing to escape
    if any(what in library.TRAINING_STATE for what, size in parts if size):
        text += "  \n*Compact…* drops the training state (a stopped run can no longer be resumed; the weights stay)."
    return text


@dataclass
class Dialog:
    """The inline confirmation under a Train button ("Resume from epoch N or start fresh?")."""

    group: gr.Group
    question: gr.Markdown
    answers: tuple[gr.Button, gr.Button]
    dismiss: gr.Button

    @classmethod
    def build(cls, prefix: str) -> Dialog:
        with gr.Group(visible=False, elem_id=f"{prefix}-dialog", elem_classes="confirm") as group:
            question = gr.Markdown(elem_id=f"{prefix}-question", padding=True)
            with gr.Row():
                first = gr.Button("", variant="primary", elem_id=f"{prefix}-answer-1")
                second = gr.Button("", elem_id=f"{prefix}-answer-2")
                dismiss = gr.Button("Cancel", variant="secondary", elem_id=f"{prefix}-dismiss")
        return cls(group, question, (first, second), dismiss)

    def show(self, question: Question) -> dict[Any, Any]:
        out: dict[Any, Any] = {
            self.group: gr.update(visible=True),
            self.question: question.text,
            self.dismiss: gr.update(value=question.dismiss),
        }
        for i, button in enumerate(self.answers):
            if i < len(question.options):
                out[button] = gr.update(value=question.options[i][0], visible=True)
            else:
                out[button] = gr.update(visible=False)
        return out

    def hide(self) -> dict[Any, Any]:
        return {self.group: gr.update(visible=False)}

    @property
    def components(self) -> list[Any]:
        return [self.group, self.question, *self.answers, self.dismiss]


class StageSection:
    """The controls, dialog and progress display of one stage."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.form: dict[str, Any] = {}  # request key -> input component
        self.charts: list[tuple[gr.LinePlot, tuple[tuple[str, str], ...]]] = []  # chart, series
        self.tensorboard: gr.Markdown | None = None
        self.pending = gr.State(None)  # (TrainRequest, Question) while a question is open

    def build_buttons(self, start_label: str, *, interactive: bool = True) -> None:
        with gr.Row():
            self.start = gr.Button(
                start_label,
                variant="primary",
                interactive=interactive,
                elem_id=f"{self.stage}-start",
                scale=2,
            )
            self.cancel = gr.Button(
                "Cancel and save checkpoint",
                variant="stop",
                interactive=False,
                elem_id=f"{self.stage}-cancel",
                scale=1,
            )
        self.dialog = Dialog.build(self.stage)
        self.message = gr.Markdown(elem_id=f"{self.stage}-message")
        self.status = gr.Markdown(elem_id=f"{self.stage}-status")

    def render_job(self, view: Any) -> dict[Any, Any]:
        return {
            self.status: views.status_markdown(view),
            self.tensorboard: views.tensorboard_markdown(view),
            self.cancel: gr.update(interactive=bool(view and view.active and not view.cancel_requested)),
        }

    def render_charts(self, view: Any) -> dict[Any, Any]:
        out = {}
        for chart, series in self.charts:
            frame = views.chart_frame(view, series)
            lines = not frame.empty and frame.groupby("series").size().max() >= 2
            out[chart] = gr.update(value=frame, visible=bool(lines))  # a single point draws no line
        return out


class TrainTab:
    def __init__(self, manager: JobManager, *, poll_s: float = 1.0, bigvgan_dir: Path | None = None) -> None:
        self.bigvgan_dir = bigvgan_dir
        self.manager = manager
        self.models_dir = manager.models_dir
        self.vae = StageSection("vae")
        self.vocoder = StageSection("vocoder")
        self.seen = gr.State({})
        self._build()
        self.timer = gr.Timer(poll_s)
        self._wire()

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        with gr.Row():
            self.model = gr.Dropdown(
                choices=self._choices(),
                value=NEW,
                label="Model",
                info="Continue training a model, or create a new one from your sounds.",
                allow_custom_value=True,  # a model deleted on disk must not break the page
                elem_id="train-model",
                scale=6,
            )
        self.summary = gr.Markdown(elem_id="train-summary")  # filled when the page has loaded
        self.manage = gr.Accordion(
            "Rename, compact or delete this model", open=False, visible=False, elem_id="model-manage"
        )
        with self.manage:
            with gr.Row():
                self.rename_to = gr.Textbox(label="New name", elem_id="model-new-name", scale=3)
                self.rename = gr.Button("Rename…", elem_id="model-rename", scale=1)
                self.compact = gr.Button("Compact…", elem_id="model-compact", scale=1)
                self.delete = gr.Button("Delete model…", variant="stop", elem_id="model-delete", scale=1)
            self.storage = gr.Markdown(elem_id="model-storage", elem_classes="subtle")
            self.manage_dialog = Dialog.build("model")
            self.manage_message = gr.Markdown(elem_id="model-message")
        self.manage_pending = gr.State(None)  # (action, new name) while its question is open

        vae = self.vae
        with gr.Column(variant="panel", elem_id="vae-section"):
            gr.Markdown("### 1 · VAE\nLearns the sound world of your corpus as mel spectrograms.")
            self.corpus = CorpusPanel(self.models_dir)
            with gr.Column() as self.new_row:  # a new model: its corpus, typed or uploaded, and name
                with gr.Row():
                    self.corpus_dir = gr.Textbox(
                        label="Corpus folder",
                        placeholder="/path/to/your/sounds",
                        elem_id="vae-corpus",
                        scale=3,
                    )
                    self.new_name = gr.Textbox(
                        label="Model name", placeholder="the folder's name", elem_id="vae-name", scale=2
                    )
                self.corpus.build_upload()
            self.corpus.build_listing()
            listing = self.corpus.listing
            self.corpus.save.click(
                lambda files, name: self.corpus.on_save(files, name, self.corpus_dir),
                [self.corpus.files, self.new_name],
                [self.corpus.message, self.corpus_dir, self.corpus.files, *listing],
            )
            for typed in (self.corpus_dir.blur, self.corpus_dir.submit):
                typed(self.corpus.show_folder, self.corpus_dir, listing, show_progress="hidden")
            with gr.Row():
                vae.form["epochs"] = _number_field("vae", "epochs")
                vae.form["lr"] = _number_field("vae", "lr")
                vae.form["batch_size"] = _number_field("vae", "batch_size")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    vae.form["precision"] = gr.Dropdown(PRECISION_CHOICES, value=DEFAULT, label="Precision")
                    vae.form["device"] = gr.Dropdown(DEVICE_CHOICES, value=DEFAULT, label="Device")
                vae.form["recipe_file"] = gr.Textbox(
                    label="Recipe file (YAML, optional)",
                    placeholder="overrides the built-in VAE recipe, like `--config` on the command line",
                    elem_id="vae-recipe-file",
                )
            vae.build_buttons("Train VAE")
            vae.charts = [
                (_chart("Reconstruction error", "step", "error", "vae-chart"), views.VAE_CHART),
            ]
            vae.tensorboard = gr.Markdown(elem_id="vae-tensorboard")

        voc = self.vocoder
        with gr.Column(variant="panel", elem_id="vocoder-section"):
            gr.Markdown(
                "### 2 · Vocoder\nThe model's own HiFi-GAN V2, trained on the same corpus: "
                "the most faithful way to hear it."
            )
            self.vocoder_notice = gr.Markdown(views.vocoder_notice(None, False), elem_id="vocoder-notice")
            with gr.Row():
                voc.form["epochs"] = _number_field("vocoder", "epochs")
                voc.form["lr"] = _number_field("vocoder", "lr")
                voc.form["batch_size"] = _number_field("vocoder", "batch_size")
                voc.form["checkpoint_interval"] = _number_field("vocoder", "checkpoint_interval")
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    voc.form["preview_interval"] = _number_field("vocoder", "preview_interval")
                    voc.form["warmup_steps"] = _number_field("vocoder", "warmup_steps")
                    voc.form["precision"] = gr.Dropdown(PRECISION_CHOICES, value=DEFAULT, label="Precision")
                    voc.form["device"] = gr.Dropdown(DEVICE_CHOICES, value=DEFAULT, label="Device")
                with gr.Row():
                    voc.form["init"] = gr.Dropdown(
                        self._init_choices(),
                        value=DEFAULT,
                        label="Start from",
                        info="the shipped universal prior (fine-tuning), scratch, or another model's vocoder",
                        elem_id="vocoder-init",
                    )
                    voc.form["recipe"] = gr.Dropdown(VOCODER_RECIPES, value="vocoder", label="Recipe")
                    voc.form["recipe_file"] = gr.Textbox(
                        label="Recipe file (YAML, optional)",
                        placeholder="overrides the chosen recipe, like `--config`",
                        elem_id="vocoder-recipe-file",
                        scale=2,
                    )
                with gr.Row():
                    voc.form["keep_checkpoint"] = gr.Checkbox(
                        label="Keep the full training state at the end (to continue later)"
                    )
                    voc.form["audio_dir"] = gr.Textbox(
                        label="Corpus folder, if it moved", placeholder="where the model's sounds are now"
                    )
                    voc.form["accept_corpus_changes"] = gr.Checkbox(
                        label="Train even if corpus files are missing or changed"
                    )
            for component in voc.form.values():
                component.interactive = False  # unlocked once the selected model has a trained VAE
            voc.build_buttons("Train vocoder", interactive=False)
            with gr.Row():
                voc.charts = [
                    (
                        _chart(
                            "Generator vs discriminator (adversarial losses)",
                            "generator step",
                            "loss",
                            "vocoder-loss-chart",
                        ),
                        views.LOSS_CHART,
                    ),
                    (
                        _chart("Mel error (L1)", "generator step", "mel L1", "vocoder-mel-chart"),
                        views.MEL_CHART,
                    ),
                ]
            gr.Markdown("#### Audio previews", elem_classes="subhead")
            # one row per held-out clip: its original beside the newest epoch's rendering (A/B)
            self.preview_pairs: list[tuple[gr.Row, gr.Audio, gr.Audio]] = []
            for i in range(PREVIEW_PAIRS):
                with gr.Row(visible=False, elem_id=f"preview-pair-{i}") as row:
                    reference = gr.Audio(interactive=False, elem_id=f"reference-{i}", elem_classes="preview")
                    preview = gr.Audio(interactive=False, elem_id=f"preview-{i}", elem_classes="preview")
                self.preview_pairs.append((row, reference, preview))
            self.previews = [component for pair in self.preview_pairs for component in pair]
            self.previews_note = gr.Markdown(elem_id="previews-note", elem_classes="subtle")
            voc.tensorboard = gr.Markdown(elem_id="vocoder-tensorboard")

    @property
    def outputs(self) -> list[Any]:
        out = [self.model, self.summary, self.new_row, self.seen, self.vocoder_notice, self.previews_note]
        out += [self.manage, self.storage, self.rename_to, self.manage_message, self.manage_pending]
        out += self.manage_dialog.components
        out += self.previews + self.corpus.listing
        for section in (self.vae, self.vocoder):
            out += [section.start, section.cancel, section.message, section.status, section.tensorboard]
            out += [section.pending, *section.dialog.components, *[chart for chart, _ in section.charts]]
        # the vocoder's form is locked and unlocked with its section; both show a run's settings
        return out + list(self.vocoder.form.values()) + list(self.vae.form.values())

    def _wire(self) -> None:
        outputs = self.outputs
        self.model.input(self.on_select, [self.model, self.seen], outputs, show_progress="hidden")
        self.timer.tick(self.on_tick, [self.model, self.seen], outputs, show_progress="hidden")
        for section in (self.vae, self.vocoder):
            inputs = {
                self.model,
                self.seen,
                self.corpus_dir,
                self.new_name,
                section.pending,
                *section.form.values(),
            }
            section.start.click(
                self._handler(self.on_start, section), inputs, outputs, show_progress="hidden"
            )
            for i, button in enumerate(section.dialog.answers):
                button.click(
                    self._handler(self.on_answer, section, i), inputs, outputs, show_progress="hidden"
                )
            section.dialog.dismiss.click(
                self._handler(self.on_dismiss, section), inputs, outputs, show_progress="hidden"
            )
            section.cancel.click(
                self._handler(self.on_cancel, section), inputs, outputs, show_progress="hidden"
            )
        manage_inputs = {self.model, self.seen, self.rename_to, self.manage_pending}
        for action, button in (("rename", self.rename), ("compact", self.compact), ("delete", self.delete)):
            button.click(
                self._handler(self.on_manage, action), manage_inputs, outputs, show_progress="hidden"
            )
        self.manage_dialog.answers[0].click(
            self.on_manage_answer, manage_inputs, outputs, show_progress="hidden"
        )
        self.manage_dialog.dismiss.click(
            lambda: {
                **self.manage_dialog.hide(),
                self.manage_pending: None,
                self.manage_message: "Nothing was changed.",
            },
            None,
            outputs,
            show_progress="hidden",
        )
        recipe = self.vocoder.form["recipe"]
        hinted = ["epochs", "lr", "batch_size", "checkpoint_interval", "preview_interval", "warmup_steps"]
        recipe.change(
            lambda name: [gr.update(placeholder=_recipe_hint(name, key)) for key in hinted],
            recipe,
            [self.vocoder.form[key] for key in hinted],
            show_progress="hidden",
        )

    @staticmethod
    def _handler(method: Any, *bound: Any) -> Any:
        def handler(data: dict[Any, Any]) -> dict[Any, Any]:
            return method(*bound, data)

        return handler

    # ------------------------------------------------------------------ reading the page

    def _choices(self) -> list[tuple[str, str]]:
        names = {model_name(p) for p in list_models(self.models_dir)}
        # a model being created has no file until its first save; a failed creation leaves none
        names |= {model_name(p) for p in self.manager.active_paths() if p.parent == self.models_dir}
        return [(name, name) for name in sorted(names, key=str.casefold)] + [(NEW_LABEL, NEW)]

    def _init_choices(self) -> list[tuple[str, str]]:
        models = sorted((model_name(p) for p in list_models(self.models_dir)), key=str.casefold)
        return [
            ("Recipe's choice", DEFAULT),
            ("Universal prior (fine-tune)", "prior"),
            ("Scratch", "scratch"),
        ] + [(f"Model '{name}'", name) for name in models]

    def _path(self, value: str | None) -> Path | None:
        """The model a dropdown value names. The value comes from the browser (the box takes typed
        text), so it must be a model name, checked as the CLI's --name is: never a path."""
        if not value or value == NEW:
            return None
        return new_model_path(value, self.models_dir)

    def _request(self, section: StageSection, data: dict[Any, Any]) -> TrainRequest:
        form = {key: data[component] for key, component in section.form.items()}
        # the library's rules, the CLI's messages (distillgan.runs.SETTINGS)
        numbers = {key: SETTINGS[key].parse(form[key]) for key in NUMBER_FIELDS if key in form}
        train: dict[str, Any] = {k: v for k, v in numbers.items() if k != "epochs" and v is not None}
        if form.get("keep_checkpoint"):
            train["keep_checkpoint"] = True
        if form.get("precision", DEFAULT) != DEFAULT:
            train["precision"] = form["precision"]
        if form.get("device", DEFAULT) != DEFAULT:
            train["accelerator"] = form["device"]
        init = form.get("init") or DEFAULT
        # another model, by name only: the same check as the CLI's names
        if (
            init not in (DEFAULT, "prior", "scratch")
            and resolve_model(init, self.models_dir).parent != self.models_dir
        ):
            raise ModelFileError(f"'{init}' is not a model in {self.models_dir}")
        if init != DEFAULT:
            train["init"] = init
        recipe_file = (form.get("recipe_file") or "").strip()
        audio_dir = (form.get("audio_dir") or "").strip()
        common: dict[str, Any] = {
            "stage": section.stage,
            "train": train,
            "epochs": numbers.get("epochs"),
            "recipe": form.get("recipe") or "vocoder",
            "recipe_file": Path(recipe_file).expanduser() if recipe_file else None,
            "audio_dir": Path(audio_dir).expanduser() if audio_dir else None,
            "accept_corpus_changes": bool(form.get("accept_corpus_changes")),
            "bigvgan_dir": self.bigvgan_dir,
        }
        path = self._path(data[self.model])
        if section.stage == "vae" and path is None:
            corpus_text = (data[self.corpus_dir] or "").strip()
            if not corpus_text:
                raise CorpusError("enter the corpus folder: a folder of 5–500 sound files")
            corpus = Path(corpus_text).expanduser()
            name = (data[self.new_name] or "").strip() or corpus.resolve().name
            return TrainRequest(model_path=new_model_path(name, self.models_dir), corpus_dir=corpus, **common)
        if path is None:
            raise DistillganError("create the model first: its VAE comes before its vocoder")
        return TrainRequest(model_path=path, **common)

    # ------------------------------------------------------------------ rendering

    def render(self, value: str | None, seen: dict[str, Any], *, full: bool = False) -> dict[Any, Any]:
        """Updates for every part of the page whose signature changed since ``seen``."""
        out: dict[Any, Any] = {}
        now: dict[str, Any] = {}
        refused = None
        try:
            path = self._path(value)
        except ModelFileError as exc:  # typed text that is no model name: say so, read nothing
            path, refused = None, _message(exc)
        state = read_model_state(path) if path is not None else None
        jobs = {
            stage: self.manager.job(path, stage) if path is not None else None for stage in ("vae", "vocoder")
        }
        job_views = {stage: job.view() if job is not None else None for stage, job in jobs.items()}
        vae_running = bool(job_views["vae"] and job_views["vae"].active)
        # a run of this UI on the model (either stage, any tab): nothing else can start on it, and
        # every tab shows that run instead of offering to start one (the model's lock is taken)
        busy = any(view is not None and view.active for view in job_views.values())
        # a live run's own total, before its first save writes it into the file
        totals = {
            stage: view.last.total_epochs
            for stage, view in job_views.items()
            if view is not None and view.active and view.last is not None and view.last.total_epochs
        }

        def part(name: str, signature: Any, produce: Any) -> bool:
            now[name] = signature
            if full or seen.get(name) != signature:
                for component, update in produce().items():
                    earlier = out.get(component)  # two parts may change one component (value, lock)
                    both = isinstance(earlier, dict) and isinstance(update, dict)
                    out[component] = {**earlier, **update} if both else update
                return True
            return False

        choices = self._choices()
        part("choices", [c[1] for c in choices], lambda: {self.model: gr.update(choices=choices)})
        file_signature = _file_signature(path)
        part(
            "summary",
            [value, file_signature, totals],
            lambda: {
                self.summary: refused or views.model_summary(state, new_model=path is None, totals=totals),
                self.new_row: gr.update(visible=path is None and refused is None),
                self.manage: gr.update(visible=bool(state and state.exists)),
                self.storage: _storage_markdown(path if state and state.exists else None),
                self.vae.start: gr.update(
                    value="Create model and train VAE" if path is None else "Train VAE"
                ),
            },
        )
        manifest = state.manifest if state is not None else None
        part(
            "corpus",
            [value, (manifest or {}).get("root"), len((manifest or {}).get("files") or [])],
            lambda: self.corpus.show_model(manifest) if path is not None else self.corpus.clear(),
        )
        enabled = bool(state and state.can_train_vocoder and not busy)
        notice = views.vocoder_notice(state, vae_running)
        part("vocoder-notice", [notice], lambda: {self.vocoder_notice: notice})
        part("vocoder-lock", [enabled], lambda: self._vocoder_lock(enabled))
        part("vae-lock", [busy], lambda: {self.vae.start: gr.update(interactive=not busy)})
        for stage, section in (("vae", self.vae), ("vocoder", self.vocoder)):
            view = job_views[stage]
            signature = [value, view.id, view.version] if view is not None else [value]
            part(stage, signature, lambda section=section, view=view: section.render_job(view))
            # the form shows the settings of the run on screen (live, or saved unfinished in the file)
            job = jobs[stage]
            source = ["job", job.id] if job is not None else ["file", file_signature]
            part(
                f"{stage}-form",
                [value, source],
                lambda section=section, job=job: self._form_values(section, state, job),
            )
            confirming = view is not None and view.state == "confirming"
            part(
                f"{stage}-confirm",
                [value, view.id if view is not None else None, confirming],
                lambda section=section, view=view, confirming=confirming: self._go_ahead_dialog(
                    section, view if confirming else None
                ),
            )
            # a chart redraws completely on each update: at most every CHART_REFRESH_S while running
            charts, sent_at = f"{stage}-charts", seen.get(f"{stage}-charts-at", 0.0)
            if not full and view is not None and view.active and time.monotonic() - sent_at < CHART_REFRESH_S:
                now[charts] = seen.get(charts)  # unchanged: a later tick sends the new points
            else:
                signature = [value, view.id, len(view.points), view.active] if view is not None else [value]
                if part(charts, signature, lambda section=section, view=view: section.render_charts(view)):
                    sent_at = time.monotonic()
            now[f"{charts}-at"] = sent_at
        previews = views.recent_previews(run_dir(path) / "previews") if path is not None else []
        part(
            "previews",
            [value, *[(str(p.path), p.mtime_ns) for p in previews]],
            lambda: self._previews(path, previews),
        )
        out[self.seen] = now
        return out

    def _go_ahead_dialog(self, section: StageSection, view: Any) -> dict[Any, Any]:
        """The question of a run waiting for its go-ahead (estimated over an hour), or none."""
        if view is None:
            return {**section.dialog.hide(), section.pending: None}
        question = Question(
            "start",
            f"{view.estimate} That is over an hour: start it?",
            (("Start the run", "start"),),
            dismiss="Don't start",
        )
        return {**section.dialog.show(question), section.pending: (GO_AHEAD, view.id)}

    def _form_values(self, section: StageSection, state: Any, job: Job | None) -> dict[Any, Any]:
        """The form as the run on screen has it: a UI run's plan (its real config, epochs, recipe
        and recipe file), else a saved unfinished run's stored config; empty (the recipe's
        values) when there is neither."""
        values = {key: "" for key in NUMBER_FIELDS} | {"precision": DEFAULT, "device": DEFAULT}
        values |= {"init": DEFAULT, "recipe": "vocoder", "recipe_file": "", "keep_checkpoint": False}
        values |= {"audio_dir": "", "accept_corpus_changes": False}
        settings = None
        if job is not None:
            plan, request = job.plan, job.request
            settings = runs.run_settings(plan.cfg, plan.epochs)
            values |= {
                "recipe": request.recipe,
                "recipe_file": str(request.recipe_file or ""),
                "device": request.train.get("accelerator", DEFAULT),
                "audio_dir": str(request.audio_dir or ""),
                "accept_corpus_changes": request.accept_corpus_changes,
            }
        elif state is not None:
            settings = runs.saved_settings(state, section.stage)
        if settings:
            values |= {key: "" if value is None else value for key, value in settings.items()}
        out: dict[Any, Any] = {}
        for key, component in section.form.items():
            value = values.get(key)
            if key == "init" and value not in [c[1] for c in self._init_choices()]:
                value = DEFAULT
            if key == "precision" and value not in PRECISIONS:
                value = DEFAULT
            if key == "recipe" and value not in [c[1] for c in VOCODER_RECIPES]:
                value = "vocoder"
            out[component] = gr.update(value=value if isinstance(value, (bool, str)) else str(value))
        return out

    def _vocoder_lock(self, enabled: bool) -> dict[Any, Any]:
        out: dict[Any, Any] = {self.vocoder.start: gr.update(interactive=enabled)}
        for component in self.vocoder.form.values():
            out[component] = gr.update(interactive=enabled)
        return out

    def _previews(self, path: Path | None, previews: list[views.Preview]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for i, (row, reference, player) in enumerate(self.preview_pairs):
            if i < len(previews):
                shown = previews[i]
                out[row] = gr.update(visible=True)
                out[reference] = gr.update(
                    value=str(shown.reference) if shown.reference else None, label=shown.reference_label
                )
                out[player] = gr.update(value=str(shown.path), label=shown.label)
            else:
                out.update({row: gr.update(visible=False), reference: None, player: None})
        folder = run_dir(path) / "previews" if path is not None else None
        out[self.previews_note] = views.previews_note(previews, len(self.preview_pairs), folder)
        return out

    # ------------------------------------------------------------------ events

    def on_load(self, value: str | None, seen: dict[str, Any]) -> dict[Any, Any]:
        choices = self._choices()
        if value == NEW or value not in [c[1] for c in choices]:
            value = choices[0][1]  # the first model, or "new" when there is none
        return {**self.render(value, {}, full=True), self.model: gr.update(choices=choices, value=value)}

    def on_select(self, value: str | None, seen: dict[str, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for section in (self.vae, self.vocoder):
            out.update(section.dialog.hide())
            out[section.message] = ""
            out[section.pending] = None
        out.update(self.render(value, seen, full=True))  # a run waiting for its go-ahead asks again
        out.update(self.manage_dialog.hide())
        out.update({self.manage_message: "", self.manage_pending: None, self.rename_to: ""})
        return out

    def on_manage(self, action: str, data: dict[Any, Any]) -> dict[Any, Any]:
        """Rename, compact or delete: refuse at once what cannot be done (a model in use, a name
        taken, nothing to compact), else ask."""
        new_name = (data[self.rename_to] or "").strip()
        try:
            path = self._path(data[self.model])
            if path is None:
                raise DistillganError("pick a model first")
            if action == "rename":
                if not new_name:
                    raise DistillganError("enter the model's new name")
                # a model-library question has the training questions' shape: a change to confirm
                question = Question(
                    "replace",
                    f"Rename {library.check_rename(path, new_name)}? "
                    "Its run folder (logs and previews) moves with it.",
                    (("Rename", "rename"),),
                    dismiss="Keep the name",
                )
            elif action == "compact":
                question = Question(
                    "replace",
                    f"Compact {library.check_compact(path)}?",
                    (("Compact", "compact"),),
                    dismiss="Keep it",
                )
            else:
                question = Question(
                    "replace",
                    f"Delete {library.check_delete(path)}? This cannot be undone.",
                    (("Delete", "delete"),),
                    dismiss="Keep it",
                )
        except DistillganError as exc:
            return {
                self.manage_message: _message(exc),
                **self.manage_dialog.hide(),
                self.manage_pending: None,
            }
        return {
            **self.manage_dialog.show(question),
            self.manage_pending: (action, new_name),
            self.manage_message: "",
        }

    def on_manage_answer(self, data: dict[Any, Any]) -> dict[Any, Any]:
        pending = data[self.manage_pending]
        if not pending:
            return self.manage_dialog.hide()
        action, new_name = pending
        out: dict[Any, Any] = {**self.manage_dialog.hide(), self.manage_pending: None}
        try:
            path = self._path(data[self.model])
            if path is None:
                raise DistillganError("pick a model first")
            if action == "rename":
                value = model_name(library.rename_model(path, new_name))
                done = f"Renamed model '{model_name(path)}' to '{value}'."
            elif action == "compact":
                freed = library.compact_model(path)
                value = model_name(path)
                done = f"Compacted model '{value}': {library.size_text(freed)} freed."
            else:
                library.delete_model(path)
                value = None
                done = f"Deleted model '{model_name(path)}'."
        except DistillganError as exc:
            return {**out, self.manage_message: _message(exc)}
        self.manager.forget(path)
        loaded = self.on_load(value, {})
        return {**loaded, **out, self.manage_message: done, self.rename_to: ""}

    def on_tick(self, value: str | None, seen: dict[str, Any]) -> dict[Any, Any]:
        if not seen:
            # the page's load event renders first (and picks the model); an empty dict would
            # count as one value for all the outputs, which Gradio refuses
            return gr.skip()
        return self.render(value, seen)

    def on_start(self, section: StageSection, data: dict[Any, Any]) -> dict[Any, Any]:
        try:
            request = self._request(section, data)
        except DistillganError as exc:
            return {section.message: _message(exc), **section.dialog.hide(), section.pending: None}
        return self._submit(section, request, data)

    def on_answer(self, section: StageSection, index: int, data: dict[Any, Any]) -> dict[Any, Any]:
        pending = data[section.pending]
        if not pending:
            return section.dialog.hide()
        if pending[0] == GO_AHEAD:  # a prepared run waits for it
            path = self._path(data[self.model])
            if path is not None:
                self.manager.confirm(path, section.stage, pending[1])
            out = {**section.dialog.hide(), section.pending: None, section.message: ""}
            return {**out, **self.render(data[self.model], data[self.seen])}
        request, question = pending
        return self._submit(section, request.answer(question.options[index][1]), data)

    def on_dismiss(self, section: StageSection, data: dict[Any, Any]) -> dict[Any, Any]:
        out = {**section.dialog.hide(), section.pending: None, section.message: "Nothing was changed."}
        pending = data[section.pending]
        if pending and pending[0] == GO_AHEAD:  # the prepared run ends untouched
            path = self._path(data[self.model])
            if path is not None:
                self.manager.cancel(path, section.stage)
            out.update(self.render(data[self.model], data[self.seen]))
            out.update({section.dialog.group: gr.update(visible=False), section.pending: None})
        return out

    def on_cancel(self, section: StageSection, data: dict[Any, Any]) -> dict[Any, Any]:
        try:
            path = self._path(data[self.model])
        except ModelFileError:  # no run can have such a name; render says why
            path = None
        if path is not None:
            self.manager.cancel(path, section.stage)
        return self.render(data[self.model], data[self.seen])

    def _submit(self, section: StageSection, request: TrainRequest, data: dict[Any, Any]) -> dict[Any, Any]:
        try:
            outcome = self.manager.submit(request)
        except Exception as exc:  # a user error, or e.g. no thread could be started: say so here
            if not isinstance(exc, DistillganError):
                log.exception("starting %s training of %s failed", request.stage, request.model_path)
            return {section.message: _message(exc), **section.dialog.hide(), section.pending: None}
        if isinstance(outcome, Question):
            return {**section.dialog.show(outcome), section.pending: (request, outcome), section.message: ""}
        assert isinstance(outcome, Job)
        value = model_name(request.model_path)
        out = {**section.dialog.hide(), section.pending: None, section.message: ""}
        out.update(self.render(value, data[self.seen]))  # the run's own state wins (e.g. its go-ahead)
        if value != data[self.model]:
            out[self.model] = gr.update(choices=self._choices(), value=value)
        return out


def _file_signature(path: Path | None) -> list[Any]:
    if path is None:
        return []
    try:
        stat = path.stat()
    except OSError:
        return [str(path)]
    return [str(path), stat.st_mtime_ns, stat.st_size]
