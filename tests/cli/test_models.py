"""`distillgan model delete|rename|compact|info|list`: failed creations leave nothing behind, what
takes the space, compacting, and one epoch count for one checkpoint everywhere."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from distillgan import library
from distillgan.cli.display import TrainingDisplay
from distillgan.errors import DistillganError, ModelLockedError
from distillgan.modelfile import ModelLock, Section, open_model, write_model
from distillgan.progress import ProgressEvent, checkpoint_saved, epochs_done, resume_after
from distillgan.runs import read_model_state
from distillgan.training import RunResult
from distillgan.ui import views
from distillgan.ui.jobs import JobView
from tests.cli.conftest import CliRun, assert_one_line_error
from tests.training_runs import train_tiny_vocoder
from tests.vocoders.model_files import write_model_file


def add_model(models_dir: Path, name: str) -> Path:
    path = write_model_file(models_dir / f"{name}.distillgan")
    previews = models_dir / "runs" / name / "previews"
    previews.mkdir(parents=True)
    (previews / "epoch-0001_clip-1.wav").write_bytes(b"RIFF")
    return path


def test_a_failed_creation_leaves_nothing_behind(cli: CliRun, models_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    not_audio = tmp_path / "notaudio"
    not_audio.mkdir()
    (not_audio / "notes.wav").write_text("notes about the session, not a recording")
    for folder in (empty, not_audio):
        assert_one_line_error(cli(["train", "vae", str(folder)]), str(folder))
    assert list(models_dir.iterdir()) == []  # no model file, no lock file, no run folder
    listed = cli(["model", "list"])
    assert listed.exit_code == 0 and "No models" in listed.stdout


def test_model_delete_refuses_a_model_in_use(cli: CliRun, models_dir: Path) -> None:
    path = add_model(models_dir, "rain")
    before = path.read_bytes()
    with ModelLock(path, owner="distillgan train vocoder"):
        for args in (["model", "delete", "rain", "--yes"], ["model", "delete", "rain"]):
            refused = cli(args)
            assert_one_line_error(
                refused, "cannot delete: model 'rain' is in use by distillgan train vocoder"
            )
            assert "Delete model" not in refused.stdout  # refused before anything is asked
        assert_one_line_error(cli(["model", "rename", "rain", "snow", "--yes"]), "cannot rename", "in use")
    assert path.read_bytes() == before and (models_dir / "runs" / "rain" / "previews").is_dir()
    assert not (models_dir / "snow.distillgan").exists()


def test_model_delete_asks_then_removes_the_file_its_lock_and_its_run_folder(
    cli: CliRun, models_dir: Path
) -> None:
    path = add_model(models_dir, "rain")
    add_model(models_dir, "snow")
    assert_one_line_error(cli(["model", "delete", "rain"]), "pass --yes")  # no terminal to ask on
    declined = cli(["model", "delete", "rain"], input="n\n")
    assert "Delete model 'rain' (" in declined.stdout and "run folder" in declined.stdout
    assert_one_line_error(declined, "kept model 'rain'; nothing was deleted")
    assert path.exists()

    deleted = cli(["model", "delete", "rain"], input="y\n")
    assert deleted.exit_code == 0, deleted.stderr
    assert "Deleted model 'rain'." in deleted.stdout
    assert sorted(p.name for p in models_dir.iterdir()) == ["runs", "snow.distillgan", "snow.distillgan.lock"]
    assert [p.name for p in (models_dir / "runs").iterdir()] == ["snow"]
    assert_one_line_error(cli(["model", "delete", "rain", "--yes"]), "no model named 'rain'")


def test_model_rename_moves_the_run_folder_and_never_replaces_a_model(cli: CliRun, models_dir: Path) -> None:
    path = add_model(models_dir, "rain")
    add_model(models_dir, "snow")
    assert_one_line_error(cli(["model", "rename", "rain", "snow", "--yes"]), "'snow' already exists")
    assert_one_line_error(cli(["model", "rename", "rain", "../elsewhere", "--yes"]), "not a valid model name")
    before = path.read_bytes()

    renamed = cli(["model", "rename", "rain", "drizzle"], input="y\n")
    assert renamed.exit_code == 0, renamed.stderr
    assert "Rename model 'rain' to 'drizzle'?" in renamed.stdout
    moved = models_dir / "drizzle.distillgan"
    assert moved.read_bytes() == before and open_model(moved).has("vae")
    assert (models_dir / "runs" / "drizzle" / "previews" / "epoch-0001_clip-1.wav").is_file()
    assert not (models_dir / "runs" / "rain").exists()
    assert sorted(p.name for p in models_dir.glob("*.distillgan*")) == [
        "drizzle.distillgan",
        "drizzle.distillgan.lock",
        "snow.distillgan",
        "snow.distillgan.lock",
    ]


def stopped_vocoder_run(vae_model: Path, corpus: Path, cancel_after: int, events: list[Any]) -> RunResult:
    """The tiny vocoder recipe (2 epochs of 8 steps), cancelled after ``cancel_after`` steps: a
    partial vocoder with its resumable training state."""
    return train_tiny_vocoder(vae_model, corpus, cancel_after=cancel_after, listener=events.append)


@pytest.mark.usefixtures("one_thread")
def test_compact_drops_a_stopped_runs_training_state_after_asking_and_keeps_the_weights(
    cli: CliRun, vae_model: Path, tiny_corpus: Path
) -> None:
    stopped_vocoder_run(vae_model, tiny_corpus, 3, [])
    reader = open_model(vae_model)
    assert reader.has("vocoder_checkpoint")
    weights = {section: reader.tensors(section) for section in ("vae", "vocoder")}
    size = vae_model.stat().st_size

    # info and list say what takes the space, the training state by name
    info = cli(["model", "info", "tiny"])
    assert info.exit_code == 0, info.stderr
    space = next(line for line in info.stdout.splitlines() if line.startswith("space: "))
    parts = dict(library.storage(vae_model))
    state_bytes = parts["vocoder training state (resumable)"]
    assert state_bytes > parts["vocoder weights"] > 0  # discriminators and optimizer moments too
    assert f"vocoder training state (resumable) {library.size_text(state_bytes)}" in space
    assert "distillgan model compact tiny" in space
    listed = cli(["model", "list"])
    assert "resumable" in listed.stdout and "model compact NAME" in listed.stdout

    # asked first: without a terminal nothing happens, a "no" keeps everything
    assert_one_line_error(cli(["model", "compact", "tiny"]), "pass --yes")
    declined = cli(["model", "compact", "tiny"], input="n\n")
    assert "Compact model 'tiny': drop its vocoder training state (resumable) (" in declined.stdout
    assert_one_line_error(declined, "kept model 'tiny' as it was; nothing was dropped")
    # refused while in use, before anything is asked
    with ModelLock(vae_model, owner="distillgan train vocoder"):
        refused = cli(["model", "compact", "tiny"], input="y\n")
        assert_one_line_error(refused, "cannot compact: model 'tiny' is in use by distillgan train vocoder")
        assert "Compact model" not in refused.stdout
    assert vae_model.stat().st_size == size and open_model(vae_model).has("vocoder_checkpoint")

    compacted = cli(["model", "compact", "tiny"], input="y\n")
    assert compacted.exit_code == 0, compacted.stderr
    assert "Compacted model 'tiny'" in compacted.stdout
    after = open_model(vae_model)
    assert not after.has("vocoder_checkpoint") and after.has("dataset")
    assert vae_model.stat().st_size < size - state_bytes / 2
    for section, before in weights.items():  # the trained weights, bit for bit
        now = after.tensors(section)
        assert now.keys() == before.keys() and all(now[k].equal(v) for k, v in before.items())
    assert "resumable" not in cli(["model", "info", "tiny"]).stdout
    # the model still generates with its own vocoder
    out = vae_model.parent / "take.wav"
    generated = cli(["generate", "tiny", "--vocoder", "hifigan", "--duration", "0.5", "-o", str(out)])
    assert generated.exit_code == 0, generated.stderr
    assert out.stat().st_size > 0
    assert_one_line_error(cli(["model", "compact", "tiny", "--yes"]), "holds no training state")


def test_compact_model_in_the_library_asks_with_the_lock_held_and_rewrites_atomically(
    vae_model: Path,
) -> None:
    write_model_file(vae_model, vocoder={})
    with ModelLock(vae_model, owner="test") as lock:
        write_model(
            vae_model, {"vocoder_checkpoint": Section(tensors={"state": torch.ones(4096)})}, lock=lock
        )
    asked: list[str] = []

    def no(what: str) -> bool:
        asked.append(what)
        with pytest.raises(ModelLockedError):  # asked with the lock held: nothing changes meanwhile
            ModelLock(vae_model, owner="probe").acquire()
        return False

    with pytest.raises(DistillganError, match="nothing was dropped"):
        library.compact_model(vae_model, confirm=no)
    assert len(asked) == 1 and "vocoder training state (resumable) (16 KB)" in asked[0]
    assert open_model(vae_model).has("vocoder_checkpoint")
    freed = library.compact_model(vae_model, confirm=lambda what: True)
    assert freed >= 16_000 and not open_model(vae_model).has("vocoder_checkpoint")
    assert [p.name for p in vae_model.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with pytest.raises(DistillganError, match="nothing to compact"):
        library.check_compact(vae_model)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cancel_after", [11, 8])  # mid-epoch 2, and on epoch 1's last step
def test_one_checkpoint_is_the_same_epoch_everywhere(
    cli: CliRun, vae_model: Path, tiny_corpus: Path, cancel_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs are counted as completed ones in every place that names this checkpoint."""
    events: list[ProgressEvent] = []
    result = stopped_vocoder_run(vae_model, tiny_corpus, cancel_after, events)
    done = 1  # 8 steps an epoch: the first epoch is complete, the second is not
    assert (result.status, result.epochs_completed, result.total_epochs) == ("partial", done, 2)
    checkpoint = next(e for e in events if e.kind == "checkpoint")
    end = next(e for e in events if e.kind == "end")
    assert checkpoint.epochs_done == end.epochs_done == done

    wording = epochs_done(done, 2)
    assert wording == "1 of 2 epochs done"
    display = TrainingDisplay(Console(file=io.StringIO()), "vocoder")
    assert display.plain_line(end).startswith(f"{wording} · step {result.steps}/16")
    view = JobView(
        1, "vocoder", "tiny", "finished", 1, False, True, end, (), None, checkpoint, result, None, ()
    )
    assert views.saved_line(view) == checkpoint_saved(done) == "Checkpoint saved at epoch 1. Resume anytime."
    assert f"| {wording} | {result.steps} / 16 |" in views.status_markdown(view)
    state = read_model_state(vae_model)
    assert views.vocoder_line(state) == f"vocoder unfinished ({wording})"
    assert state.saved_run("vocoder") == done and resume_after(done) == "Resume after epoch 1"
    info = cli(["model", "info", "tiny"]).stdout
    assert f"vocoder: hifigan_v2 partial, {wording}, {result.steps} steps" in info
    monkeypatch.setenv("COLUMNS", "250")  # the table's cells unwrapped
    assert f"vocoder (partial, {wording}, resumable)" in cli(["model", "list"]).stdout
