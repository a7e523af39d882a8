"""`distillgan model delete|rename`, and failed creations that leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from distillgan.modelfile import ModelLock, open_model
from tests.cli.conftest import CliRun, assert_one_line_error
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
