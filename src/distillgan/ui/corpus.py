"""The corpus in the browser: drop sound files to make a new corpus folder, and audition a corpus.

The saving and listing are :mod:`distillgan.corpora`'s; this module only lays them out. The
players get the first seconds of each file as samples read here, not the file itself: Gradio
serves files from the models folder only, and a typed corpus folder can be anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import soundfile as sf

from distillgan import corpora
from distillgan.errors import DistillganError

AUDITION_PLAYERS = 6  # a corpus holds up to 500 files: the page shows the first few
AUDITION_SECONDS = 20.0  # of each: enough to recognise a sound, little to send
PER_ROW = 3


@dataclass(frozen=True)
class Audition:
    label: str  # the file's path inside the corpus folder
    audio: tuple[int, np.ndarray] | None  # (sample rate, the first seconds); None: unreadable


def audition(root: Path, files: list[Path], limit: int = AUDITION_PLAYERS) -> list[Audition]:
    """The first ``limit`` files' labels and opening seconds."""
    out = []
    for path in files[:limit]:
        try:
            label = path.relative_to(root).as_posix()
        except ValueError:
            label = path.name
        try:
            with sf.SoundFile(str(path)) as handle:
                frames = int(AUDITION_SECONDS * handle.samplerate)
                audio = (handle.samplerate, handle.read(frames, dtype="int16"))  # what the player gets
        except (sf.SoundFileError, RuntimeError, OSError):
            audio = None
        out.append(Audition(label, audio))
    return out


def listing_note(root: Path, total: int, shown: int) -> str:
    if total == 0:
        return f"No sound files in `{root}`."
    noun = "file" if total == 1 else "files"
    text = f"`{root}`: {total} sound {noun}"
    if shown:
        text += f"; the first {AUDITION_SECONDS:g} s of each below"
    if total > shown:
        text += f" ({total - shown} more not shown)"
    return text + "."


class CorpusPanel:
    """The upload box (in the new-model area) and the corpus listing with players."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def build_upload(self) -> None:
        self.files = gr.File(
            label="…or drop sound files here (several at once): they become a new corpus folder",
            file_count="multiple",
            type="filepath",
            height=180,
            elem_id="corpus-upload",
        )
        with gr.Row():
            self.save = gr.Button("Save as a new corpus", elem_id="corpus-upload-save", scale=0)
        self.message = gr.Markdown(elem_id="corpus-upload-message")

    def build_listing(self) -> None:
        with gr.Accordion("Listen to the corpus", open=False, elem_id="corpus-listing"):
            self.note = gr.Markdown(elem_id="corpus-note")
            self.players = []
            for first in range(0, AUDITION_PLAYERS, PER_ROW):
                with gr.Row():
                    self.players += [
                        gr.Audio(interactive=False, visible=False, elem_id=f"corpus-player-{i}")
                        for i in range(first, min(first + PER_ROW, AUDITION_PLAYERS))
                    ]

    @property
    def listing(self) -> list[Any]:
        return [self.note, *self.players]

    # ------------------------------------------------------------------ what they show

    def show(self, root: Path, files: list[Path]) -> dict[Any, Any]:
        heard = audition(root, files)
        out: dict[Any, Any] = {self.note: listing_note(root, len(files), len(heard))}
        for i, player in enumerate(self.players):
            if i < len(heard):
                label = heard[i].label + ("" if heard[i].audio is not None else " (cannot be read)")
                out[player] = gr.update(value=heard[i].audio, label=label, visible=True)
            else:
                out[player] = gr.update(value=None, visible=False)
        return out

    def clear(self, note: str = "") -> dict[Any, Any]:
        return {self.note: note, **{player: gr.update(value=None, visible=False) for player in self.players}}

    def show_folder(self, text: str | None) -> dict[Any, Any]:
        """The typed corpus folder's files (nothing while the box is empty)."""
        text = (text or "").strip()
        if not text:
            return self.clear()
        try:
            folder = Path(text).expanduser()
            return self.show(folder, corpora.corpus_files(folder))
        except DistillganError as exc:
            return self.clear(f"⚠ {exc}")

    def show_model(self, manifest: Any) -> dict[Any, Any]:
        """The files a model learned from (as its file records them)."""
        if not manifest:
            return self.clear()
        try:
            root, files = corpora.manifest_files(manifest)
        except DistillganError as exc:
            return self.clear(f"⚠ {exc}")
        return self.show(root, files)

    def on_save(self, files: list[str] | None, name: str | None, corpus_box: Any) -> dict[Any, Any]:
        """Save the dropped files as corpus ``name`` and put its folder in ``corpus_box``, ready
        for "Create model and train VAE"."""
        name = (name or "").strip()
        try:
            if not name:
                raise DistillganError("enter the model name first: the new corpus folder gets the same name")
            folder = corpora.save_upload(files or [], name, self.models_dir)
        except DistillganError as exc:
            return {self.message: f"⚠ {exc}"}
        count = len(files or [])
        return {
            self.message: (
                f"Saved {count} sound {'file' if count == 1 else 'files'} in `{folder}`. "
                f"**Create model and train VAE** now creates model '{name}' from them."
            ),
            corpus_box: str(folder),
            self.files: None,
            **self.show(folder, corpora.corpus_files(folder)),
        }
