"""The UI's model library and export level (handlers called as Gradio calls them, no browser):
failed creations leave nothing, every skipped file is listed, rename, compact and delete ask first
and refuse a model in use, and the Generate tab normalises loudness with the CLI's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import torch

from distillgan.modelfile import ModelLock, Section, open_model, write_model
from distillgan.ui import views
from distillgan.ui.train_tab import DEFAULT, NEW
from tests.vocoders.model_files import write_model_file


def start_data(train: Any, corpus: Path, name: str) -> dict[Any, Any]:
    """The VAE section's Start press for a new model: the recipe's defaults, ``corpus`` and ``name``."""
    data = {c: DEFAULT if isinstance(c, gr.Dropdown) else "" for c in train.vae.form.values()}
    return data | {train.model: NEW, train.corpus_dir: str(corpus), train.new_name: name, train.seen: {}}


def test_a_failed_creation_leaves_nothing_and_lists_every_skipped_file(served, tmp_path: Path) -> None:
    train = served.app.train
    empty = tmp_path / "empty"
    empty.mkdir()
    odd = tmp_path / "notaudio"
    odd.mkdir()
    (odd / "notes.wav").write_text("notes about the session, not a recording")
    (odd / "blip.wav").write_bytes(b"")
    for folder, name in ((empty, "ui-empty"), (odd, "ui-notaudio")):
        train.on_start(train.vae, start_data(train, folder, name))
        path = served.models_dir / f"{name}.distillgan"
        job = train.manager.job(path, "vae")
        job.join(60)
        view = job.view()
        assert view.state == "failed"
        assert list(served.models_dir.rglob(f"{name}*")) == []  # no model file, lock file or run folder
        assert name not in [value for _, value in train._choices()]  # no phantom in the dropdown
    assert view.skipped == (f"{odd / 'blip.wav'}: empty (0 bytes)", f"{odd / 'notes.wav'}: not audio")
    status = views.status_markdown(view)
    assert (
        "Skipped 2 files" in status
        and "blip.wav: empty (0 bytes)" in status
        and "notes.wav: not audio" in status
    )


def manage(train: Any, action: str, value: str, new_name: str = "", pending: Any = None) -> dict[Any, Any]:
    data = {train.model: value, train.seen: {}, train.rename_to: new_name, train.manage_pending: pending}
    if action == "answer":
        return train.on_manage_answer(data)
    return train.on_manage(action, data)


def test_rename_and_delete_ask_first_and_refuse_a_model_in_use(served) -> None:
    train = served.app.train
    path = write_model_file(served.models_dir / "ui-lib-a.distillgan")
    (served.models_dir / "runs" / "ui-lib-a" / "previews").mkdir(parents=True)
    question = train.manage_dialog.question

    with ModelLock(path, owner="distillgan train vocoder"):
        refused = manage(train, "delete", "ui-lib-a")
        assert (
            "cannot delete: model 'ui-lib-a' is in use by distillgan train vocoder"
            in refused[train.manage_message]
        )
        assert question not in refused  # refused at once: nothing asked

    asked = manage(train, "rename", "ui-lib-a", "ui-lib-b")
    assert asked[question].startswith("Rename model 'ui-lib-a' to 'ui-lib-b'?")
    renamed = manage(train, "answer", "ui-lib-a", pending=asked[train.manage_pending])
    assert renamed[train.manage_message] == "Renamed model 'ui-lib-a' to 'ui-lib-b'."
    assert renamed[train.model]["value"] == "ui-lib-b"
    moved = served.models_dir / "ui-lib-b.distillgan"
    assert moved.is_file() and not path.exists() and (served.models_dir / "runs" / "ui-lib-b").is_dir()

    asked = manage(train, "delete", "ui-lib-b")
    assert (
        asked[question].startswith("Delete model 'ui-lib-b' (")
        and "This cannot be undone." in asked[question]
    )
    kept = train.manage_dialog.dismiss  # "Keep it": nothing happens
    assert asked[kept]["value"] == "Keep it" and moved.is_file()
    deleted = manage(train, "answer", "ui-lib-b", pending=asked[train.manage_pending])
    assert deleted[train.manage_message] == "Deleted model 'ui-lib-b'."
    assert not moved.exists() and not (served.models_dir / "runs" / "ui-lib-b").exists()
    assert not list(served.models_dir.glob("ui-lib-*")) and deleted[train.model]["value"] != "ui-lib-b"


def test_compact_asks_first_refuses_a_model_in_use_and_keeps_the_weights(served) -> None:
    train = served.app.train
    path = write_model_file(served.models_dir / "ui-lib-c.distillgan", vocoder={"status": "partial"})
    with ModelLock(path, owner="test") as lock:  # a stopped run's resumable state (1 MB)
        write_model(path, {"vocoder_checkpoint": Section(tensors={"m": torch.ones(256, 1024)})}, lock=lock)
    weights = open_model(path).tensors("vocoder")
    size = path.stat().st_size
    shown = train.render("ui-lib-c", {}, full=True)[train.storage]
    assert "vocoder training state (resumable) 1.0 MB" in shown and "*Compact…* drops" in shown
    question = train.manage_dialog.question

    with ModelLock(path, owner="distillgan train vocoder"):
        refused = manage(train, "compact", "ui-lib-c")
        assert (
            "cannot compact: model 'ui-lib-c' is in use by distillgan train vocoder"
            in refused[train.manage_message]
        )
        assert question not in refused  # refused at once: nothing asked

    asked = manage(train, "compact", "ui-lib-c")
    assert asked[question].startswith("Compact model 'ui-lib-c': drop its vocoder training state")
    assert path.stat().st_size == size  # asking changes nothing
    compacted = manage(train, "answer", "ui-lib-c", pending=asked[train.manage_pending])
    assert compacted[train.manage_message].startswith("Compacted model 'ui-lib-c': 1.0 MB freed")
    assert compacted[train.model]["value"] == "ui-lib-c"
    assert not open_model(path).has("vocoder_checkpoint") and path.stat().st_size < size - 1_000_000
    assert all(open_model(path).tensors("vocoder")[k].equal(v) for k, v in weights.items())
    assert "training state" not in compacted[train.storage]
    nothing = manage(train, "compact", "ui-lib-c")
    assert "holds no training state" in nothing[train.manage_message] and question not in nothing


def test_generate_tab_normalises_loudness_with_the_clis_rules(served) -> None:
    write_model_file(
        served.models_dir / "ui-level.distillgan",
        vocoder={"status": "complete", "epochs": 40, "val_mel_l1": 0.2},
    )
    generate = served.app.generate
    _, badge, error, _ = generate.on_generate("ui-level", 1, 1.0, 44100, "16", "hifigan", "-20")[:4]
    assert "-20.0 LUFS" in badge and "Loudness normalised" in badge and not error["visible"]
    for text, message in (
        ("3", "loudness must be between -60 and 0 LUFS"),
        ("loud", "Loudness must be a number"),
    ):
        _, _, error, _ = generate.on_generate("ui-level", 1, 1.0, 44100, "16", "hifigan", text)[:4]
        assert message in error["value"]


def test_the_compact_button_asks_then_drops_the_training_state(page, served) -> None:
    """In the browser: the manage accordion shows what takes the space; Compact… asks, then drops."""
    from playwright.sync_api import expect

    from tests.ui.conftest import choose

    path = write_model_file(served.models_dir / "ui-lib-d.distillgan", vocoder={"status": "partial"})
    with ModelLock(path, owner="test") as lock:
        write_model(path, {"vocoder_checkpoint": Section(tensors={"m": torch.ones(256, 1024)})}, lock=lock)
    page.reload()
    choose(page, "train-model", "ui-lib-d")
    page.get_by_text("Rename, compact or delete this model").click()
    expect(page.locator("#model-storage")).to_contain_text("vocoder training state (resumable) 1.0 MB")
    page.locator("#model-compact").click()
    expect(page.locator("#model-question")).to_contain_text(
        "Compact model 'ui-lib-d': drop its vocoder training state (resumable) (1.0 MB)"
    )
    assert open_model(path).has("vocoder_checkpoint")  # asking changed nothing
    page.locator("#model-answer-1").click()
    expect(page.locator("#model-message")).to_contain_text("Compacted model 'ui-lib-d': 1.0 MB freed")
    assert not open_model(path).has("vocoder_checkpoint") and open_model(path).has("vocoder")
    expect(page.locator("#model-storage")).not_to_contain_text("training state")
