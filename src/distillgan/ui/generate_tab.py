"""The Generate tab: a seeded clip from a model, through the vocoder the user (or auto) picks.

It calls :func:`distillgan.generation.generate` and shows the :class:`QualityBadge`; the
vocoder list is read from the model file whenever the model or the tab is selected, so a
vocoder trained a minute ago in the Train tab is offered without a restart.
"""

from __future__ import annotations

import contextvars
import secrets
from pathlib import Path
from typing import Any

import gradio as gr

from distillgan.errors import DistillganError, VocoderUnavailableError
from distillgan.generation import (
    BIT_DEPTHS,
    SAMPLE_RATES,
    QualityBadge,
    VocoderStatus,
    generate,
    vocoder_status,
    write_generation,
)
from distillgan.modelfile import list_models, new_model_path
from distillgan.ui.jobs import model_name, read_model_state
from distillgan.ui.views import parse_number

BIT_DEPTH_LABELS = {"16": "16-bit", "24": "24-bit", "32f": "32-bit float"}
VOCODER_LABELS = {"hifigan": "Per-model HiFi-GAN", "bigvgan": "BigVGAN Universal"}
MAX_SEED = 2**31 - 1  # plenty of variety, and exact in the browser's numbers


def vocoder_choices(status: VocoderStatus | None) -> list[tuple[str, str]]:
    """Auto, the model's own HiFi-GAN only when it has one, and the universal BigVGAN."""
    auto = "Auto" if status is None else f"Auto ({VOCODER_LABELS[status.auto_choice]})"
    choices = [(auto, "auto")]
    if status is not None and status.has_hifigan:
        choices.append((VOCODER_LABELS["hifigan"], "hifigan"))
    return [*choices, (VOCODER_LABELS["bigvgan"], "bigvgan")]


def vocoder_info(status: VocoderStatus | None) -> str:
    if status is None:
        return ""
    text = f"Auto picks the {VOCODER_LABELS[status.auto_choice]}: {status.auto_reason}."
    if status.has_hifigan and status.hifigan_warning:
        text += f"  \n<small>⚠ Per-model HiFi-GAN: {status.hifigan_warning}</small>"
    if status.auto_choice == "bigvgan":
        text += "  \n<small>BigVGAN-v2 (~490 MB) is downloaded once, on first use.</small>"
    return text


def badge_markdown(badge: QualityBadge, path: Path) -> str:
    """The badge's own description, its vocoder line in bold, and where the file went."""
    first, *rest = badge.describe().splitlines()
    name, _, reason = first.partition(" — ")
    lines = [f"**{name}**" + (f" — {reason}" if reason else "")]
    lines += [f"<small>{line}</small>" if line.startswith("Warning:") else line for line in rest]
    return "  \n".join([*lines, f"Saved to `{path}`"])


class GenerateTab:
    def __init__(self, models_dir: Path, tab: gr.Tab, *, bigvgan_dir: Path | None = None) -> None:
        self.models_dir = models_dir
        self.bigvgan_dir = bigvgan_dir
        self._build()
        self._wire(tab)

    def _build(self) -> None:
        self.model = gr.Dropdown(
            choices=self._choices(), label="Model", info="Models with a trained VAE.", elem_id="gen-model"
        )
        with gr.Row():
            with gr.Column(variant="panel", scale=1):
                with gr.Row():
                    self.seed = gr.Number(
                        label="Seed",
                        value=0,
                        precision=0,
                        minimum=0,
                        maximum=MAX_SEED,
                        elem_id="gen-seed",
                        scale=3,
                    )
                    self.dice = gr.Button(
                        "Random seed",
                        size="sm",
                        elem_id="gen-random-seed",
                        scale=1,
                        elem_classes="inline-button",
                    )
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

    def _wire(self, tab: gr.Tab) -> None:
        status_outputs = [self.model, self.vocoder, self.vocoder_info]
        tab.select(self.on_show, [self.model, self.vocoder], status_outputs, show_progress="hidden")
        self.model.change(
            self.on_model, [self.model, self.vocoder], status_outputs[1:], show_progress="hidden"
        )
        self.dice.click(lambda: secrets.randbelow(MAX_SEED + 1), None, self.seed, show_progress="hidden")
        inputs = [
            self.model,
            self.seed,
            self.duration,
            self.sample_rate,
            self.bit_depth,
            self.vocoder,
            self.loudness,
        ]
        outputs = [self.audio, self.badge, self.error, self.retry]
        self.go.click(self.on_generate, inputs, outputs)
        self.retry.click(self.on_generate, inputs, outputs)

    # ------------------------------------------------------------------ model and vocoder list

    def _choices(self) -> list[str]:
        names = []
        for path in list_models(self.models_dir):
            state = read_model_state(path)
            if state.vae_attrs is not None:
                names.append(model_name(path))
        return names

    def _path(self, value: str | None) -> Path | None:
        """The model a dropdown value names: a value from the browser must be a model name, never
        a path (checked as the CLI's --name is); it also names the files written for it."""
        return new_model_path(value, self.models_dir) if value else None

    def _status(self, value: str | None) -> VocoderStatus | None:
        try:
            path = self._path(value)
            return vocoder_status(path) if path is not None and path.exists() else None
        except DistillganError:
            return None

    def on_model(self, value: str | None, choice: str | None) -> list[Any]:
        status = self._status(value)
        choices = vocoder_choices(status)
        keep = choice if choice in [c[1] for c in choices] else "auto"
        return [gr.update(choices=choices, value=keep), vocoder_info(status)]

    def on_show(self, value: str | None, choice: str | None) -> list[Any]:
        names = self._choices()
        if value not in names:
            value = names[0] if names else None
        return [gr.update(choices=names, value=value), *self.on_model(value, choice)]

    # ------------------------------------------------------------------ generating

    def on_generate(
        self,
        value: str | None,
        seed: float | None,
        duration: float,
        sample_rate: int,
        bit_depth: str,
        choice: str,
        loudness: str | None = None,
        progress: gr.Progress = gr.Progress(),  # Gradio fills this in: the download's progress bar
    ) -> list[Any]:
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
            desc = f"Downloading BigVGAN-v2 {name} (first use only)"
            context.copy().run(progress, (done, total) if total else None, desc=desc, unit="bytes")

        try:
            generation = generate(
                path,
                seed=int(seed or 0),
                duration_s=float(duration),
                vocoder=choice,  # type: ignore[arg-type]
                sample_rate=int(sample_rate),
                bit_depth=bit_depth,
                bigvgan_dir=self.bigvgan_dir,
                download_progress=downloading,
                loudness_lufs=loudness_lufs,
            )
            folder = self.models_dir / "generated"
            folder.mkdir(parents=True, exist_ok=True)
            badge = generation.badge
            out = (
                folder / f"{value}_seed{badge.seed}_{badge.vocoder}_{badge.sample_rate}_{badge.bit_depth}.wav"
            )
            write_generation(out, generation)
        except VocoderUnavailableError as exc:
            return self._failed(str(exc), retry=True)
        except DistillganError as exc:
            return self._failed(str(exc), retry=False)
        return [
            str(out),
            badge_markdown(badge, out),
            gr.update(value="", visible=False),
            gr.update(visible=False),
        ]

    @staticmethod
    def _failed(message: str, *, retry: bool) -> list[Any]:
        return [None, "", gr.update(value=f"⚠ {message}", visible=True), gr.update(visible=retry)]
