"""The Generate tab: a seeded clip from a model, through the vocoder the user (or auto) picks.

It calls :func:`distillgan.generation.generate` and shows the :class:`QualityBadge`; the
vocoder list is read from the model file whenever the model or the tab is selected, so a
vocoder trained a minute ago in the Train tab is offered without a restart. BigVGAN-v2 is
marked unavailable there when it is neither in the "BigVGAN folder" (Advanced) or the Hugging
Face cache nor downloadable (:func:`distillgan.vocoders.bigvgan_weights.bigvgan_availability`).

An empty seed means a fresh random seed for each take, as the CLI does without ``--seed``; the
seed used is on the badge and in the file name, and typed back (or "Reuse seed") it renders the
same clip again. Every clip is a new numbered take in ``<models>/generated`` named as the CLI
names its takes (:func:`distillgan.generation.write_take`): nothing is ever overwritten.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

import gradio as gr

from distillgan.errors import DistillganError, VocoderUnavailableError
from distillgan.generation import (
    AUTO_FALLBACK_REASON,
    BIT_DEPTHS,
    SAMPLE_RATES,
    QualityBadge,
    VocoderStatus,
    generate,
    vocoder_status,
    write_take,
)
from distillgan.modelfile import list_models, new_model_path
from distillgan.ui.jobs import model_name, read_model_state
from distillgan.ui.views import parse_number
from distillgan.vocoders.bigvgan_weights import (
    FOLDER_FIELD,
    LOCAL_DIR_ENV,
    BigVGANAvailability,
    bigvgan_availability,
    worded,
)

BIT_DEPTH_LABELS = {"16": "16-bit", "24": "24-bit", "32f": "32-bit float"}
VOCODER_LABELS = {"hifigan": "Per-model HiFi-GAN", "bigvgan": "BigVGAN Universal"}
GENERATED_FOLDER = "generated"  # under the models folder: a browser visitor has no current folder


def vocoder_choices(
    status: VocoderStatus | None, bigvgan: BigVGANAvailability | None = None
) -> list[tuple[str, str]]:
    """Auto, the model's own HiFi-GAN only when it has one, and the universal BigVGAN, marked
    unavailable (``bigvgan`` says so) when it cannot be had."""
    unavailable = bigvgan is not None and not bigvgan.available
    if status is None:
        auto = "Auto"
    elif status.auto_choice == "bigvgan" and unavailable and status.has_hifigan:
        auto = f"Auto ({VOCODER_LABELS['hifigan']}: BigVGAN unavailable)"  # generation's fallback
    elif status.auto_choice == "bigvgan" and unavailable:
        auto = f"Auto ({VOCODER_LABELS['bigvgan']}, unavailable)"
    else:
        auto = f"Auto ({VOCODER_LABELS[status.auto_choice]})"
    choices = [(auto, "auto")]
    if status is not None and status.has_hifigan:
        choices.append((VOCODER_LABELS["hifigan"], "hifigan"))
    bigvgan_label = VOCODER_LABELS["bigvgan"] + (" (unavailable)" if unavailable else "")
    return [*choices, (bigvgan_label, "bigvgan")]


def vocoder_info(status: VocoderStatus | None, bigvgan: BigVGANAvailability | None = None) -> str:
    if status is None:
        return ""
    text = f"Auto picks the {VOCODER_LABELS[status.auto_choice]}: {status.auto_reason}."
    if (
        status.auto_choice == "bigvgan"
        and status.has_hifigan
        and bigvgan is not None
        and not bigvgan.available
    ):
        text = f"Auto uses the {VOCODER_LABELS['hifigan']}: {AUTO_FALLBACK_REASON}."
    if status.has_hifigan and status.hifigan_warning:
        text += f"  \n<small>⚠ Per-model HiFi-GAN: {status.hifigan_warning}</small>"
    if bigvgan is not None:
        line = bigvgan.describe("ui")
        text += f"  \n⚠ {line}" if not bigvgan.available else f"  \n<small>{line}</small>"
    return text


def badge_markdown(badge: QualityBadge, path: Path) -> str:
    """The badge's own description, its vocoder line in bold, and where the file went."""
    first, *rest = badge.describe().splitlines()
    name, _, reason = first.partition(" — ")
    lines = [f"**{name}**" + (f" — {reason}" if reason else "")]
    lines += [f"<small>{line}</small>" if line.startswith("Warning:") else line for line in rest]
    return "  \n".join([*lines, f"Saved to `{path}`"])


def parse_seed(text: Any) -> int | str | None:
    """The seed field: None when empty (a fresh seed), an int when it is digits; anything else
    goes on as typed, for the library's check to name the mistake as it does for the CLI."""
    text = str(text if text is not None else "").strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


class GenerateTab:
    def __init__(self, models_dir: Path, tab: gr.Tab, *, bigvgan_dir: Path | None = None) -> None:
        self.models_dir = models_dir
        self.bigvgan_dir = bigvgan_dir  # `distillgan ui --bigvgan-dir`: the folder field's default
        self._build()
        self._wire(tab)

    def _build(self) -> None:
        self.model = gr.Dropdown(
            choices=self._choices(), label="Model", info="Models with a trained VAE.", elem_id="gen-model"
        )
        with gr.Row():
            with gr.Column(variant="panel", scale=1):
                with gr.Row():
                    self.seed = gr.Textbox(
                        label="Seed",
                        placeholder="random",
                        info="Empty: a fresh random seed for each take. The same seed renders the same clip.",
                        max_lines=1,
                        elem_id="gen-seed",
                        scale=3,
                    )
                    with gr.Column(scale=1, min_width=120):
                        self.reuse = gr.Button(
                            "Reuse seed", size="sm", visible=False, elem_id="gen-reuse-seed"
                        )
                        self.random = gr.Button("Random", size="sm", elem_id="gen-random-seed")
                self.duration = gr.Slider(
                    1, 120, value=10, step=0.5, label="Duration (seconds)", elem_id="gen-duration"
                )
                with gr.Row():
                    self.sample_rate = gr.Dropdown(
                        [(f"{rate / 1000:g} kHz", rate) for rate in SAMPLE_RATES],
                        value=SAMPLE_RATES[0],
                        label="Sample rate",
                        elem_id="gen-sample-rate",
                    )
                    self.bit_depth = gr.Dropdown(
                        [(BIT_DEPTH_LABELS[b], b) for b in BIT_DEPTHS],
                        value=BIT_DEPTHS[0],
                        label="Bit depth",
                        elem_id="gen-bit-depth",
                    )
                self.loudness = gr.Textbox(
                    label="Loudness (LUFS)",
                    placeholder="as vocoded; e.g. -14 to normalise",
                    info="Integrated loudness (BS.1770) to normalise to; the peak stays below 0 dBFS.",
                    elem_id="gen-loudness",
                )
                self.vocoder = gr.Radio(
                    vocoder_choices(None), value="auto", label="Vocoder", elem_id="gen-vocoder"
                )
                self.vocoder_info = gr.Markdown(elem_id="gen-vocoder-info", elem_classes="subtle")
                with gr.Accordion("Advanced", open=False, elem_id="gen-advanced"):
                    self.bigvgan_folder = gr.Textbox(
                        value=str(self.bigvgan_dir or ""),
                        label=FOLDER_FIELD,
                        placeholder=f"${LOCAL_DIR_ENV}, else the Hugging Face cache",
                        info="A folder holding BigVGAN-v2's config.json and bigvgan_generator.pt, used "
                        "instead of the Hugging Face cache (the CLI's --bigvgan-dir).",
                        max_lines=1,
                        elem_id="gen-bigvgan-dir",
                    )
                self.go = gr.Button("Generate", variant="primary", elem_id="gen-go")
            with gr.Column(scale=1):
                self.audio = gr.Audio(
                    label="Result",
                    type="filepath",
                    interactive=False,
                    elem_id="gen-audio",
                    buttons=["download"],
                )
                self.badge = gr.Markdown(elem_id="gen-badge", elem_classes="badge")
                self.error = gr.Markdown(elem_id="gen-error", visible=False)
                self.retry = gr.Button("Retry", visible=False, elem_id="gen-retry")
        self.last_seed = gr.State(None)

    def _wire(self, tab: gr.Tab) -> None:
        lists = [self.vocoder, self.vocoder_info]
        choice_inputs = [self.model, self.vocoder, self.bigvgan_folder]
        # Everything that redraws the vocoder list runs one at a time, in the order it was asked
        # for, and reads the model chosen when it was asked: the last answer is for the model
        # shown, never an earlier one that happened to finish later.
        in_order: dict[str, Any] = {
            "show_progress": "hidden",
            "concurrency_limit": 1,
            "concurrency_id": "generate-vocoder-list",
        }
        # the list after the models, in a step of its own: it reads the model chosen by then
        tab.select(self.on_show_models, self.model, self.model, show_progress="hidden").then(
            self.on_vocoders, choice_inputs, lists, **in_order
        )
        # .change also fires when the tab moves the dropdown: any model switch clears the result
        self.model.change(self.on_model, choice_inputs, [*lists, *self.result_outputs[:5]], **in_order)
        for event in (self.bigvgan_folder.submit, self.bigvgan_folder.blur):
            event(self.on_vocoders, choice_inputs, lists, **in_order)
        self.reuse.click(lambda seed: "" if seed is None else str(seed), self.last_seed, self.seed)
        self.random.click(lambda: "", None, self.seed, show_progress="hidden")
        inputs = [
            self.model,
            self.seed,
            self.duration,
            self.sample_rate,
            self.bit_depth,
            self.vocoder,
            self.loudness,
            self.bigvgan_folder,
        ]
        for button in (self.go, self.retry):
            # then the list again: a download (or a failed one) changes what is available
            button.click(self.on_generate, inputs, self.result_outputs).then(
                self.on_vocoders, choice_inputs, lists, **in_order
            )

    @property
    def result_outputs(self) -> list[Any]:
        return [self.audio, self.badge, self.error, self.retry, self.reuse, self.last_seed]

    # ------------------------------------------------------------------ model and vocoder list

    def _choices(self) -> list[str]:
        names = []
        for path in list_models(self.models_dir):
            state = read_model_state(path)
            if state.vae is not None:
                names.append(model_name(path))
        return names

    def _path(self, value: str | None) -> Path | None:
        """The model a dropdown value names: a value from the browser must be a model name, never
        a path (checked as the CLI's --name is); it also names the files written for it."""
        return new_model_path(value, self.models_dir) if value else None

    def _folder(self, text: str | None) -> str | None:
        """The BigVGAN folder field: None (not sent) is the app's own setting, empty is none."""
        if text is None:
            return None if self.bigvgan_dir is None else str(self.bigvgan_dir)
        return text.strip() or None

    def _status(self, value: str | None) -> VocoderStatus | None:
        try:
            path = self._path(value)
            return vocoder_status(path) if path is not None and path.exists() else None
        except DistillganError:
            return None

    def on_vocoders(self, value: str | None, choice: str | None, folder: str | None = None) -> list[Any]:
        """The vocoder list and its notes for this model and BigVGAN folder."""
        status = self._status(value)
        bigvgan = bigvgan_availability(self._folder(folder)) if status is not None else None
        choices = vocoder_choices(status, bigvgan)
        keep = choice if choice in [c[1] for c in choices] else "auto"
        return [gr.update(choices=choices, value=keep), vocoder_info(status, bigvgan)]

    def on_model(self, value: str | None, choice: str | None, folder: str | None = None) -> list[Any]:
        """A model switch: its vocoder list, and no trace of the previous model's result."""
        cleared = [None, "", gr.update(value="", visible=False), gr.update(visible=False)]
        return [*self.on_vocoders(value, choice, folder), *cleared, gr.update(visible=False)]

    def on_show_models(self, value: str | None) -> Any:
        """The models with a VAE now. The choice stays as it is while it is one of them: this
        answer may arrive after the user picked another model, and must not undo that."""
        names = self._choices()
        if value in names:
            return gr.update(choices=names)
        return gr.update(choices=names, value=names[0] if names else None)

    def on_show(self, value: str | None, choice: str | None, folder: str | None = None) -> list[Any]:
        """The page's first look: the models, the first one chosen, and its vocoder list."""
        names = self._choices()
        if value not in names:
            value = names[0] if names else None
        return [gr.update(choices=names, value=value), *self.on_vocoders(value, choice, folder)]

    # ------------------------------------------------------------------ generating

    def on_generate(
        self,
        value: str | None,
        seed: Any,
        duration: float,
        sample_rate: int,
        bit_depth: str,
        choice: str,
        loudness: str | None = None,
        folder: str | None = None,
        progress: gr.Progress = gr.Progress(),  # Gradio fills this in: the download's progress bar
    ) -> list[Any]:
        """The Generate and Retry buttons: audio, badge, error and retry updates, then the "Reuse
        seed" button and the seed it reuses (hidden and None when the generation failed)."""
        try:
            path = self._path(value)
            loudness_lufs = parse_number(loudness, "Loudness")
        except DistillganError as exc:
            return self._failed(str(exc), retry=False)
        if path is None:
            return self._failed("Pick a model first: train one in the Train tab.", retry=False)

        # Gradio finds this page's progress bar through context variables, and the download may
        # report from a thread of its own: every report runs in a copy of this handler's context.
        context = contextvars.copy_context()

        def downloading(name: str, done: int, total: int) -> None:
            if progress is None:
                return
            desc = f"Downloading BigVGAN-v2 {name} (first use only)"
            context.copy().run(progress, (done, total) if total else None, desc=desc, unit="bytes")

        try:
            generation = generate(
                path,
                seed=parse_seed(seed),  # type: ignore[arg-type]  # a typo is refused by its check
                duration_s=float(duration),
                vocoder=choice,  # type: ignore[arg-type]
                sample_rate=int(sample_rate),
                bit_depth=bit_depth,
                bigvgan_dir=self._folder(folder),
                download_progress=downloading,
                loudness_lufs=loudness_lufs,
            )
            out_dir = self.models_dir / GENERATED_FOLDER
            out_dir.mkdir(parents=True, exist_ok=True)
            out = write_take(out_dir, value, generation)
        except DistillganError as exc:
            # a vocoder that cannot be had now may be later (a download, a folder): offer Retry
            return self._failed(worded(exc, "ui"), retry=isinstance(exc, VocoderUnavailableError))
        used = generation.badge.seed
        return [
            str(out),
            badge_markdown(generation.badge, out),
            gr.update(value="", visible=False),
            gr.update(visible=False),
            gr.update(value=f"Reuse seed {used}", visible=True),
            used,
        ]

    @staticmethod
    def _failed(message: str, *, retry: bool) -> list[Any]:
        # no result, so no seed to reuse
        return [
            None,
            "",
            gr.update(value=f"⚠ {message}", visible=True),
            gr.update(visible=retry),
            gr.update(visible=False),
            None,
        ]
