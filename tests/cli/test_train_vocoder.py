"""`distillgan train vocoder`: prompts, refusals, the live display, and a real Ctrl+C."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import yaml

from distillgan.audio import write_audio
from distillgan.corpus import load_corpus
from distillgan.examples import synth_tone
from distillgan.modelfile import ModelLock, Section, VocoderRecord, open_model, write_model
from distillgan.progress import METRICS, TABLE, CancelToken, kept_epoch
from distillgan.recipes import load_vocoder_config
from distillgan.runs import read_model_state
from distillgan.training import run_dir, train_vocoder
from distillgan.ui import views
from tests.cli.conftest import CliRun, assert_one_line_error, cli_env, run_until_sigint
from tests.training_runs import CancelAfter

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--recipe", "vocoder_tiny", "--epochs", "1"]


def leave_vocoder(path: Path, corpus: Path, *, cancel_after: int | None = None, keep: bool = False) -> None:
    """Train the tiny vocoder through the API: cancelled (partial + training state) or complete."""
    cfg = load_vocoder_config(
        None, {"train": {"epochs": 1, "keep_checkpoint": keep, "accelerator": "cpu"}}, recipe="vocoder_tiny"
    )
    token = CancelToken()
    with ModelLock(path, owner="test") as lock:
        train_vocoder(
            load_corpus(corpus),
            path,
            cfg,
            lock=lock,
            cancel=token,
            extra_callbacks=[CancelAfter(token, cancel_after)] if cancel_after else None,
        )


def test_trains_with_a_live_table_previews_and_the_tensorboard_folder(cli: CliRun, vae_model: Path) -> None:
    result = cli(["train", "vocoder", "tiny", *TINY])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Corpus: 5 files" in out and "Training the HiFi-GAN vocoder of 'tiny'" in out
    logdir = re.search(r"TensorBoard: tensorboard --logdir (\S+)", out)
    assert logdir and Path(logdir.group(1)).is_dir()
    assert Path(logdir.group(1)).is_relative_to(run_dir(vae_model))
    for column in ("epochs done", *(METRICS[key].label for key in TABLE["vocoder"]), "ETA", "100%"):
        assert column in out, column
    kept = r"epoch 1 kept \(held-out mel error \d[\d.]*; the network's own \d[\d.]*, the lowest\)"
    assert re.search(r"Vocoder training complete: 1 epochs, 8 steps, " + kept, out)
    previews = run_dir(vae_model) / "previews"
    assert f"Previews: {previews}" in out
    assert sorted(p.name for p in previews.glob("*.wav")) == [
        "epoch-0001_clip-1.wav",
        "epoch-0001_clip-2.wav",
        "reference_clip-1.wav",
        "reference_clip-2.wav",
    ]
    attrs = open_model(vae_model).attrs("vocoder")
    assert (attrs["status"], attrs["epochs_completed"], attrs["steps"]) == ("complete", 1, 8)
    # the kept epoch is said alike at the end of training, by `model info` and in the UI
    said = kept_epoch(read_model_state(vae_model).vocoder)
    assert said in out and said in cli(["model", "info", "tiny"]).stdout
    assert said in views.vocoder_line(read_model_state(vae_model))


def test_the_kept_epoch_wording_of_trained_starts_older_files_and_unscored_runs() -> None:
    scored = VocoderRecord(best_epoch=4, val_mel_l1_best=0.0612, val_network_mel_l1_best=0.216)
    started = dataclasses.replace(scored, started_from="prior", start_mel_l1=0.07, start_network_mel_l1=0.3)
    assert kept_epoch(started) == (
        "epoch 4 kept (held-out mel error 0.0612; the network's own 0.216, the lowest, from 0.3 at the start)"
    )
    assert kept_epoch(dataclasses.replace(started, best_epoch=0)) == (
        "the vocoder it started from (prior) kept: no epoch beat it on held-out clips "
        "(held-out mel error 0.0612; the network's own 0.216)"
    )
    assert (
        kept_epoch(scored) == "epoch 4 kept (held-out mel error 0.0612; the network's own 0.216, the lowest)"
    )
    older = VocoderRecord(best_epoch=3, val_mel_l1_best=0.0612)
    assert kept_epoch(older) == "epoch 3 kept (held-out mel error 0.0612)"
    assert (
        kept_epoch(VocoderRecord(best_epoch=0)) == "the last epoch kept (none was scored on held-out clips)"
    )
    assert kept_epoch(VocoderRecord(best_epoch="3")) == "epoch ? kept"  # a count of the wrong type in a file


def test_unfinished_run_asks_resume_or_fresh_every_time(
    cli: CliRun, vae_model: Path, tiny_corpus: Path
) -> None:
    leave_vocoder(vae_model, tiny_corpus, cancel_after=2)
    before = vae_model.read_bytes()

    # no terminal, no flag: refuse rather than guess, and change nothing
    refused = cli(["train", "vocoder", "tiny", *TINY])
    assert_one_line_error(refused, "--resume or --fresh")
    assert "start fresh?" not in refused.stdout  # a question nobody can answer is not shown
    assert vae_model.read_bytes() == before

    resumed = cli(["train", "vocoder", "tiny"], input="resume\n")
    assert resumed.exit_code == 0, resumed.stderr
    assert "Resume or start fresh?" in resumed.stdout
    assert "Resuming the HiFi-GAN vocoder" in resumed.stdout
    assert "Vocoder training complete: 1 epochs, 8 steps" in resumed.stdout  # 3 saved + 5 more


def test_fresh_answer_starts_over(cli: CliRun, vae_model: Path, tiny_corpus: Path) -> None:
    leave_vocoder(vae_model, tiny_corpus, cancel_after=2)
    fresh = cli(["train", "vocoder", "tiny", *TINY], input="fresh\n")
    assert fresh.exit_code == 0, fresh.stderr
    assert "Resume or start fresh?" in fresh.stdout
    assert "Training the HiFi-GAN vocoder" in fresh.stdout
    assert not open_model(vae_model).has("vocoder_checkpoint")


def test_a_trained_vocoder_is_replaced_only_when_the_user_says_so(
    cli: CliRun, vae_model: Path, tiny_corpus: Path
) -> None:
    leave_vocoder(vae_model, tiny_corpus)
    before = vae_model.read_bytes()
    question = "This model already has a trained vocoder. Replace it?"

    no_terminal = cli(["train", "vocoder", "tiny", *TINY])
    assert_one_line_error(no_terminal, "--yes")
    declined = cli(["train", "vocoder", "tiny", *TINY], input="n\n")
    assert question in declined.stdout
    assert_one_line_error(declined, "kept the existing vocoder")
    assert vae_model.read_bytes() == before

    accepted = cli(["train", "vocoder", "tiny", *TINY], input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert question in accepted.stdout and "Vocoder training complete" in accepted.stdout
    assert vae_model.read_bytes() != before

    flagged = cli(["train", "vocoder", "tiny", *TINY, "--yes"], input="")
    assert flagged.exit_code == 0, flagged.stderr
    assert question not in flagged.stdout


def test_kept_training_state_asks_both_questions_and_extends_a_finished_run(
    cli: CliRun, vae_model: Path, tiny_corpus: Path
) -> None:
    leave_vocoder(vae_model, tiny_corpus, keep=True)  # complete, with its training state
    before = vae_model.read_bytes()
    both = cli(["train", "vocoder", "tiny", *TINY], input="fresh\nn\n")
    assert "Resume after epoch 1 or start fresh?" in both.stdout
    assert "This model already has a trained vocoder. Replace it?" in both.stdout
    assert_one_line_error(both, "kept the existing vocoder")
    finished = cli(["train", "vocoder", "tiny", "--resume"])
    assert_one_line_error(finished, "already trained 1 epochs", "--epochs")
    assert vae_model.read_bytes() == before

    extended = cli(["train", "vocoder", "tiny", "--resume", "--epochs", "2", "--lr", "0.1"])
    assert extended.exit_code == 0, extended.stderr
    assert "warning: resuming keeps the run's own recipe (--lr ignored)" in extended.stderr
    assert "Vocoder training complete: 2 epochs, 16 steps" in extended.stdout


def test_corpus_that_no_longer_matches_is_named_and_refused(
    cli: CliRun, vae_model: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    (tiny_corpus / "bell.wav").unlink()
    write_audio(tiny_corpus / "tone.wav", synth_tone(0.9, seed=9, freq=220.0), 44_100)
    result = cli(["train", "vocoder", "tiny", *TINY])
    assert_one_line_error(
        result, "1 file missing (bell.wav)", "1 changed (tone.wav)", "--accept-corpus-changes"
    )

    moved = tmp_path / "moved"
    shutil.move(tiny_corpus, moved)
    assert_one_line_error(cli(["train", "vocoder", "tiny", *TINY]), "not found", "--audio-dir")
    accepted = cli(["train", "vocoder", "tiny", *TINY, "--audio-dir", str(moved), "--accept-corpus-changes"])
    assert accepted.exit_code == 0, accepted.stderr
    assert "warning: training on what is there: 1 file missing (bell.wav)" in accepted.stderr
    assert "Corpus: 4 files" in accepted.stdout


def mistakes(tmp: Path, vae_model: Path) -> list[tuple[list[str], str]]:
    no_vae = tmp / "models" / "novae.distillgan"
    with ModelLock(no_vae, owner="test") as lock:
        write_model(
            no_vae,
            {"dataset": Section(attrs={"manifest": {"root": str(tmp), "files": []}})},
            lock=lock,
            create=True,
        )
    not_a_model = tmp / "notes.distillgan"
    not_a_model.write_text("hello")
    unknown_key = tmp / "unknown.yaml"
    unknown_key.write_text("train:\n  segment: 3\n")
    bad_shape = tmp / "shape.yaml"
    bad_shape.write_text(yaml.safe_dump({"generator": {"upsample_rates": [8, 8, 4]}}))
    bad_segment = tmp / "segment.yaml"
    bad_segment.write_text("train:\n  segment_samples: 5000\n")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("train: [unclosed")
    cmd = ["train", "vocoder", "tiny", *TINY]
    return [
        (["train", "vocoder", "ghost"], "no model named 'ghost'"),
        (["train", "vocoder", "novae"], "no trained VAE yet"),
        (["train", "vocoder", str(not_a_model)], "not a distillgan model file"),
        (["train", "vocoder", "tiny", "--resume"], "no vocoder training state to resume"),
        ([*cmd, "--config", str(tmp / "missing.yaml")], "missing.yaml"),
        ([*cmd, "--config", str(bad_yaml)], "not valid YAML"),
        ([*cmd, "--config", str(unknown_key)], "unknown config key 'train.segment'"),
        ([*cmd, "--config", str(bad_shape)], "must multiply to the mel hop 512"),
        ([*cmd, "--config", str(bad_segment)], "multiple of 512"),
        ([*cmd, "--batch-size", "0"], "--batch-size"),
        ([*cmd, "--lr", "-1"], "--lr"),
        ([*cmd, "--lr", "3"], "train.lr"),
        ([*cmd, "--epochs", "-1"], "epochs must be a whole number of at least 0"),
        ([*cmd, "--precision", "fp8"], "--precision"),
        ([*cmd, "--recipe", "huge"], "--recipe"),
        ([*cmd, "--audio-dir", str(tmp / "nowhere")], "not found"),
        ([*cmd, "--accelerator", "gpu"], "cannot set up training"),
        ([*cmd, "--accelerator", "quantum"], "accelerator"),
        ([*cmd, "--strategy", "teleport"], "cannot set up training"),
        ([*cmd, "--devices", "zero"], "cannot set up training"),
        (["train", "vocoder"], "Missing argument"),
    ]


def test_every_mistake_is_one_clear_line(cli: CliRun, vae_model: Path, tmp_path: Path) -> None:
    before = vae_model.read_bytes()
    for args, fragment in mistakes(tmp_path, vae_model):
        assert_one_line_error(cli(args), fragment)
    with ModelLock(vae_model, owner="distillgan ui"):
        assert_one_line_error(cli(["train", "vocoder", "tiny", *TINY]), "in use by distillgan ui")
    assert vae_model.read_bytes() == before


def test_ctrl_c_saves_at_once_and_the_run_resumes(vae_model: Path, models_dir: Path, cli: CliRun) -> None:
    vae_before = open_model(vae_model).tensors("vae")
    args = [
        "train",
        "vocoder",
        "tiny",
        "--recipe",
        "vocoder_tiny",
        "--epochs",
        "40",
        "--checkpoint-interval",
        "100",
    ]
    code, out, err, seconds = run_until_sigint(args, cli_env(models_dir))
    assert code == 130, err
    assert "Traceback" not in err
    saved = re.search(r"Checkpoint saved at epoch (\d+)\. Resume anytime\.", out)
    assert saved, out + err
    assert seconds < 30
    reader = open_model(vae_model)
    attrs = reader.attrs("vocoder")
    assert attrs["status"] == "partial" and attrs["epochs_completed"] == int(saved.group(1))
    assert reader.has("vocoder_checkpoint") and attrs["steps"] > 0
    vae_after = reader.tensors("vae")
    assert all(vae_after[k].equal(v) for k, v in vae_before.items())

    # resume to the end of the interrupted epoch: the step count continues, it does not restart
    resume_to = attrs["epochs_completed"] + 1
    resumed = cli(["train", "vocoder", "tiny", "--resume", "--epochs", str(resume_to)])
    assert resumed.exit_code == 0, resumed.stderr
    assert f"Vocoder training complete: {resume_to} epochs, {resume_to * 8} steps" in resumed.stdout
    assert open_model(vae_model).attrs("vocoder")["steps"] == resume_to * 8


def _short_quick_recipe(tmp_path: Path) -> Path:
    recipe = tmp_path / "short.yaml"
    train = {"epochs": 1, "steps_per_epoch": 2, "warmup_steps": 1, "val_clips": 1, "val_clip_seconds": 0.25}
    recipe.write_text(yaml.safe_dump({"train": train}))
    return recipe


def test_init_choices_on_the_command_line(cli: CliRun, vae_model: Path, tmp_path: Path) -> None:
    recipe = ["--recipe", "vocoder_quick", "--config", str(_short_quick_recipe(tmp_path))]
    assert cli(["train", "vocoder", "tiny", *recipe]).exit_code == 0  # the recipe's default: the prior
    attrs = open_model(vae_model).attrs("vocoder")
    # a trained start is scored before the first step: the kept epoch had to beat it
    assert (
        attrs["started_from"] == "prior" and attrs["start_network_mel_l1"] >= attrs["val_network_mel_l1_best"]
    )

    scratch = cli(["train", "vocoder", "tiny", *recipe, "--init", "scratch", "--fresh", "--yes"])
    assert scratch.exit_code == 0, scratch.stderr
    attrs = open_model(vae_model).attrs("vocoder")
    assert attrs["started_from"] == "scratch" and attrs["start_network_mel_l1"] is None

    other = tmp_path / "models" / "other.distillgan"
    other.write_bytes(vae_model.read_bytes())
    from_model = cli(["train", "vocoder", "other", *recipe, "--init", "tiny", "--fresh", "--yes"])
    assert from_model.exit_code == 0, from_model.stderr
    assert open_model(other).attrs("vocoder")["started_from"] == "model tiny"

    assert_one_line_error(
        cli(["train", "vocoder", "tiny", *recipe, "--init", "tiny", "--fresh", "--yes"]),
        "cannot start from the model's own vocoder",
    )
    assert_one_line_error(
        cli(["train", "vocoder", "tiny", "--recipe", "vocoder_tiny", "--init", "prior", "--fresh", "--yes"]),
        "another shape",
    )
    assert_one_line_error(
        cli(["train", "vocoder", "tiny", *recipe, "--init", "nosuch", "--fresh", "--yes"]), "no model named"
    )
