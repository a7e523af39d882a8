"""`distillgan train vae`: a model from a folder, and one clear line for every mistake."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from distillgan.audio import write_audio
from distillgan.modelfile import ModelLock, open_model
from tests.cli.conftest import CliRun, assert_one_line_error, cli_env, run_until_sigint

TINY_RECIPE = {
    "model": {"latent_dim": 4, "channels": [16, 16], "kernel_size": 3},
    "train": {"chunk_frames": 16, "batch_size": 4, "epochs": 2},
}


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    return path


def test_trains_a_model_and_lists_it(cli: CliRun, tiny_corpus: Path, models_dir: Path, recipe: Path) -> None:
    result = cli(["train", "vae", str(tiny_corpus), "--name", "rain", "--config", str(recipe)])
    assert result.exit_code == 0, result.stderr
    assert "Corpus: 5 files" in result.stdout and "VAE training complete" in result.stdout
    assert "tensorboard --logdir" in result.stdout
    path = models_dir / "rain.distillgan"
    assert open_model(path).has("vae")

    listed = cli(["model", "list"])
    assert listed.exit_code == 0 and "rain" in listed.stdout and "vae" in listed.stdout

    info = cli(["model", "info", "rain", "--json"])
    assert info.exit_code == 0
    data = json.loads(info.stdout)
    assert data["corpus"]["files"] == 5 and data["vae"]["summary"]["status"] == "complete"
    assert "vocoder" not in data
    text = cli(["model", "info", str(path)])  # by path too
    assert text.exit_code == 0 and "vocoder: none yet" in text.stdout


def test_name_defaults_to_the_folder_and_models_dir_flag_wins(
    cli: CliRun, tiny_corpus: Path, tmp_path: Path, models_dir: Path, recipe: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = cli(["train", "vae", str(tiny_corpus), "--config", str(recipe), "--models-dir", str(elsewhere)])
    assert result.exit_code == 0, result.stderr
    assert (elsewhere / "corpus.distillgan").exists()
    assert not list(models_dir.glob("*.distillgan"))


def test_existing_model_is_never_replaced_silently(
    cli: CliRun, tiny_corpus: Path, models_dir: Path, recipe: Path
) -> None:
    args = ["train", "vae", str(tiny_corpus), "--name", "rain", "--config", str(recipe)]
    assert cli(args).exit_code == 0
    before = (models_dir / "rain.distillgan").read_bytes()
    assert_one_line_error(cli(args), "already exists", "--overwrite")
    assert (models_dir / "rain.distillgan").read_bytes() == before
    assert cli([*args, "--overwrite"]).exit_code == 0


def test_fewer_than_five_files_warns_but_trains(
    cli: CliRun, tiny_corpus: Path, models_dir: Path, recipe: Path
) -> None:
    for extra in sorted(tiny_corpus.iterdir())[:3]:
        extra.unlink()
    result = cli(["train", "vae", str(tiny_corpus), "--name", "two", "--config", str(recipe)])
    assert result.exit_code == 0, result.stderr
    assert "warning: only 2 usable file(s)" in result.stderr


def test_bad_files_are_skipped_with_one_warning_each(
    cli: CliRun, tiny_corpus: Path, models_dir: Path, recipe: Path
) -> None:
    (tiny_corpus / "notes.wav").write_text("not audio at all")
    write_audio(tiny_corpus / "quiet.wav", [0.0] * 44_100, 44_100)
    result = cli(["train", "vae", str(tiny_corpus), "--name", "mixed", "--config", str(recipe)])
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert any("notes.wav: not audio" in w for w in warnings)
    assert any("quiet.wav: silent" in w for w in warnings)
    assert "5 files" in result.stdout and "2 skipped" in result.stdout


def test_locked_model_is_refused_with_the_holder(
    cli: CliRun, tiny_corpus: Path, models_dir: Path, recipe: Path
) -> None:
    with ModelLock(models_dir / "busy.distillgan", owner="distillgan ui"):
        result = cli(["train", "vae", str(tiny_corpus), "--name", "busy", "--config", str(recipe)])
    assert_one_line_error(result, "in use by distillgan ui")


def mistakes(tmp: Path, corpus: Path, recipe: Path) -> list[tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    junk = tmp / "junk"
    junk.mkdir()
    (junk / "a.wav").write_bytes(b"RIFF\x00\x00")
    (junk / "b.mp3").write_text("hello")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("train: [unclosed")
    unknown_key = tmp / "unknown.yaml"
    unknown_key.write_text("train:\n  epoch: 3\n")
    wrong_type = tmp / "type.yaml"
    wrong_type.write_text("train:\n  batch_size: many\n")
    out_of_range = tmp / "range.yaml"
    out_of_range.write_text("train:\n  lr: 5.0\n")
    tiny = ["--config", str(recipe)]  # so a mistake that slipped through would not train for long
    return [
        (["train", "vae", str(tmp / "nowhere")], "not found"),
        (["train", "vae", str(empty)], "no audio files"),
        (["train", "vae", str(junk)], "no usable audio"),
        (["train", "vae", str(corpus), "--name", "../escape", *tiny], "not a valid model name"),
        (["train", "vae", str(corpus), "--name", ".hidden", *tiny], "not a valid model name"),
        (["train", "vae", str(corpus), "--config", str(tmp / "missing.yaml")], "missing.yaml"),
        (["train", "vae", str(corpus), "--config", str(bad_yaml)], "not valid YAML"),
        (["train", "vae", str(corpus), "--config", str(unknown_key)], "unknown config key 'train.epoch'"),
        (["train", "vae", str(corpus), "--config", str(wrong_type)], "train.batch_size"),
        (["train", "vae", str(corpus), "--config", str(out_of_range)], "train.lr"),
        (["train", "vae", str(corpus), "--epochs", "-1", *tiny], "--epochs"),
        (["train", "vae", str(corpus), "--batch-size", "-3", *tiny], "--batch-size"),
        (["train", "vae", str(corpus), "--lr", "abc", *tiny], "--lr"),
        (["train", "vae", str(corpus), "--precision", "8", *tiny], "--precision"),
        (["train", "vae", str(corpus), "--accelerator", "tpu-of-dreams", *tiny], "invalid accelerator"),
        (["train", "vae", str(corpus), "--accelerator", "gpu", *tiny], "cannot set up training"),
        (["train", "vae", str(corpus), "--name", "a/b", *tiny], "not a valid model name"),
        (["train", "vae"], "Missing argument"),
        (["train", "vae", str(corpus), "--bogus", *tiny], "No such option"),
        (["train", "vee"], "No such command"),
        (["model", "info", "ghost"], "no model named 'ghost'"),
        (["model", "info", str(tmp / "ghost.distillgan")], "no model file"),
    ]


def test_every_mistake_is_one_clear_line(
    cli: CliRun, tiny_corpus: Path, models_dir: Path, tmp_path: Path, recipe: Path
) -> None:
    for args, fragment in mistakes(tmp_path, tiny_corpus, recipe):
        result = cli(args)
        assert_one_line_error(result, fragment)
    assert not list(models_dir.glob("*.distillgan")), "a refused command left a model behind"


def test_broken_model_files_are_clear_in_info_and_list(cli: CliRun, models_dir: Path) -> None:
    (models_dir / "text.distillgan").write_text("hello")
    (models_dir / "empty.distillgan").write_bytes(b"")
    assert_one_line_error(cli(["model", "info", "text"]), "not a distillgan model file")
    assert_one_line_error(cli(["model", "info", "empty"]), "empty file")
    listed = cli(["model", "list"])
    assert listed.exit_code == 0
    assert "text" in listed.stdout and "unreadable" in listed.stdout


def test_ctrl_c_saves_the_vae_run_and_exits_130(
    tiny_corpus: Path, models_dir: Path, recipe: Path, cli: CliRun
) -> None:
    args = ["train", "vae", str(tiny_corpus), "--name", "rain", "--config", str(recipe), "--epochs", "2000"]
    code, out, err, seconds = run_until_sigint(args, cli_env(models_dir))
    assert code == 130 and "Traceback" not in err, err
    saved = re.search(r"Checkpoint saved at epoch (\d+)\. Resume anytime\.", out)
    assert saved, out + err
    assert seconds < 30
    path = models_dir / "rain.distillgan"
    reader = open_model(path)
    assert reader.has("vae_checkpoint")
    summary = json.loads(reader.attrs("vae")["summary"])
    assert summary["status"] == "partial" and summary["epochs_completed"] == int(saved.group(1))
