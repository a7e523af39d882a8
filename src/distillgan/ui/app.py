"""The Gradio app: a Train tab and a Generate tab over one models folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from distillgan.errors import DistillganError
from distillgan.modelfile import default_models_dir
from distillgan.ui.generate_tab import GenerateTab
from distillgan.ui.jobs import JobManager
from distillgan.ui.train_tab import TrainTab

# system fonts: a local app should not fetch fonts from the internet
THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="sky",
    neutral_hue="slate",
    font=("ui-sans-serif", "system-ui", "sans-serif"),
    font_mono=("ui-monospace", "monospace"),
)
CSS = """
.gradio-container { max-width: 1180px !important; margin: 0 auto; }
#app-header h1 { margin-bottom: 0; }
#app-header p { margin-top: 4px; opacity: 0.8; }
.confirm { border: 2px solid var(--color-accent) !important; border-radius: 10px; }
.subtle, .subtle p { font-size: 0.92em; opacity: 0.8; }
.badge { border-left: 4px solid var(--color-accent); padding-left: 12px; }
.inline-button { align-self: end; margin-bottom: 8px; }
"""
HEADER = (
    "# distillgan\n"
    "Learn a sound model from your own recordings, then hear it through a vocoder trained on the same sounds."
)


@dataclass
class App:
    blocks: gr.Blocks
    manager: JobManager
    models_dir: Path
    train: TrainTab
    generate: GenerateTab
    url: str | None = None

    def launch(
        self, host: str = "127.0.0.1", port: int | None = None, *, auth: tuple[str, str] | None = None
    ) -> str:
        """Serve on ``host:port`` (port None: the first free one from 7860) without blocking;
        with ``auth`` (user, password) every page, file and event asks for that login first."""
        self.blocks.queue(default_concurrency_limit=2)
        try:
            _, url, _ = self.blocks.launch(
                server_name=host,
                server_port=port,
                auth=auth,
                prevent_thread_lock=True,
                quiet=True,
                show_error=True,
                allowed_paths=[str(self.models_dir)],
                theme=THEME,
                css=CSS,
                ssr_mode=False,
                footer_links=["gradio", "settings"],
            )
        except OSError as exc:
            where = f"{host}:{port}" if port else host
            raise DistillganError(f"cannot serve the UI on {where} ({exc})") from exc
        self.url = url
        return url

    def close(self, timeout: float = 120.0) -> None:
        """Cancel running trainings (each saves its checkpoint), wait for them, stop serving."""
        self.manager.shutdown(timeout)
        self.blocks.close(verbose=False)


def build_app(
    models_dir: str | Path | None = None, *, bigvgan_dir: Path | None = None, poll_s: float = 1.0
) -> App:
    folder = default_models_dir(models_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    manager = JobManager(folder)
    with gr.Blocks(title="distillgan", analytics_enabled=False) as blocks:
        gr.Markdown(HEADER, elem_id="app-header")
        with gr.Tabs():
            with gr.Tab("Train", id="train", elem_id="tab-train"):
                train = TrainTab(manager, poll_s=poll_s, bigvgan_dir=bigvgan_dir)
            with gr.Tab("Generate", id="generate", elem_id="tab-generate") as generate_tab:
                generate = GenerateTab(folder, generate_tab, bigvgan_dir=bigvgan_dir)
        gr.Markdown(f"Models folder: `{folder}`", elem_classes="subtle")
        blocks.load(train.on_load, [train.model, train.seen], train.outputs, show_progress="hidden")
        blocks.load(
            generate.on_show,
            [generate.model, generate.vocoder],
            [generate.model, generate.vocoder, generate.vocoder_info],
            show_progress="hidden",
        )
    return App(blocks, manager, folder, train, generate)
