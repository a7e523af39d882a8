"""The run plan both front ends use: questions, the model's lock before any question, one config
per run, and one rule (and message) per user-facing setting."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from distillgan import config as cfg_lib
from distillgan.errors import ConfigError, ModelLockedError
from distillgan.modelfile import ModelLock, VAERecord, VocoderRecord
from distillgan.recipes import load_vocoder_config
from distillgan.runs import SETTINGS, ModelState, Plan, Question, TrainRequest, plan_run, read_model_state
from distillgan.ui.jobs import UI_TERMS, JobManager
from tests.cli.conftest import assert_one_line_error, invoke
from tests.training_runs import train_tiny_vocoder

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = Path("/models/bells.distillgan")
STORED = load_vocoder_config(None, {"train": {"epochs": 6}}, recipe="vocoder_tiny")
COMPLETE = VocoderRecord(
    config=cfg_lib.to_dict(STORED.generator),
    train_config=cfg_lib.to_dict(STORED.train),
    status="complete",
    epochs_completed=6,
    total_epochs=6,
    steps=48,
)


def trained_vae(**changes: Any) -> ModelState:
    vae = VAERecord(status="complete")
    state = ModelState(MODEL, exists=True, vae=vae, manifest={"root": "/corpus", "files": []})
    return dataclasses.replace(state, **changes)


def test_questions_come_in_order_and_answers_lead_to_one_plan() -> None:
    partial = dataclasses.replace(COMPLETE, status="partial", epochs_completed=2, steps=16)
    state = trained_vae(vocoder=partial, vocoder_checkpoint=True)
    request = TrainRequest("vocoder", MODEL, train={"lr": 0.5, "checkpoint_interval": 3})
    question = plan_run(request, state, UI_TERMS)
    assert isinstance(question, Question) and question.kind == "resume"
    assert question.text == "Resume after epoch 2 or start fresh?"

    resumed = plan_run(request.answer("resume"), state, UI_TERMS)
    assert isinstance(resumed, Plan) and resumed.resume
    # the stored run's shape and optimisation; the interval may change; epochs: the stored total
    assert resumed.cfg.generator == STORED.generator and resumed.cfg.train.lr == STORED.train.lr
    assert (resumed.cfg.train.checkpoint_interval, resumed.epochs, resumed.steps_done) == (3, 6, 16)
    assert resumed.ignored == ("lr",)
    assert resumed.note(lambda key: f"<{key}>") == "resuming keeps the run's own recipe (<lr> ignored)"

    fresh = plan_run(request.answer("fresh"), state, UI_TERMS)
    assert isinstance(fresh, Plan) and not fresh.resume
    assert (fresh.cfg.train.lr, fresh.cfg.train.checkpoint_interval) == (0.5, 3)

    done = trained_vae(vocoder=COMPLETE)
    replace = plan_run(request, done, UI_TERMS)
    assert isinstance(replace, Question) and replace.kind == "replace"
    assert replace.kept == "kept the existing vocoder; nothing changed"
    assert isinstance(plan_run(request.answer("replace"), done, UI_TERMS), Plan)


def test_every_setting_has_one_rule_and_one_message() -> None:
    assert SETTINGS["epochs"].parse(" 12 ") == 12
    assert SETTINGS["epochs"].parse("0") is None  # the recipe decides, as `train.epochs: 0` does
    assert SETTINGS["epochs"].parse("") is None
    assert SETTINGS["lr"].parse("2e-4") == pytest.approx(2e-4)
    assert SETTINGS["warmup_steps"].parse("0") == 0
    refused = {
        ("epochs", "-3"): "epochs must be a whole number of at least 0 (0: the recipe decides), got '-3'",
        ("epochs", "2.5"): "epochs must be a whole number of at least 0 (0: the recipe decides), got '2.5'",
        ("lr", "0"): "learning rate must be a number above 0, got '0'",
        ("lr", "fast"): "learning rate must be a number above 0, got 'fast'",
        ("lr", "nan"): "learning rate must be a number above 0, got 'nan'",
        ("batch_size", "0"): "batch size must be a whole number of at least 1, got '0'",
        ("checkpoint_interval", "-1"): "checkpoint interval must be a whole number of at least 1, got '-1'",
        ("preview_interval", "x"): "preview interval must be a whole number of at least 1, got 'x'",
        ("warmup_steps", "-5"): "warm-up steps must be a whole number of at least 0, got '-5'",
    }
    forged = {"precision": "fp8"}
    with pytest.raises(ConfigError, match=r"precision must be one of 32, 32-true, .*, got 'fp8'"):
        plan_run(TrainRequest("vocoder", MODEL, train=forged), trained_vae(), UI_TERMS)
    with pytest.raises(
        ConfigError, match="recipe must be one of vocoder, vocoder_quick, vocoder_tiny, got 'x'"
    ):
        plan_run(TrainRequest("vocoder", MODEL, recipe="x"), trained_vae(), UI_TERMS)
    for (key, text), message in refused.items():
        with pytest.raises(ConfigError) as error:
            SETTINGS[key].parse(text)
        assert str(error.value) == message


@pytest.mark.parametrize(
    ("option", "key", "text"),
    [
        ("--epochs", "epochs", "-2"),
        ("--lr", "lr", "0"),
        ("--batch-size", "batch_size", "0"),
        ("--checkpoint-interval", "checkpoint_interval", "0"),
        ("--preview-interval", "preview_interval", "1.5"),
        ("--warmup-steps", "warmup_steps", "-1"),
    ],
)
def test_the_command_line_refuses_a_setting_with_the_forms_message(
    vae_model: Path, option: str, key: str, text: str
) -> None:
    with pytest.raises(ConfigError) as rule:
        SETTINGS[key].parse(text)
    result = invoke(["train", "vocoder", "tiny", option, text])
    assert_one_line_error(result, f"'{option}': {rule.value}")


def test_a_model_in_use_is_refused_before_any_question(vae_model: Path, tiny_corpus: Path) -> None:
    train_tiny_vocoder(vae_model, tiny_corpus, epochs=1)  # complete: starting again would ask to replace
    assert isinstance(
        plan_run(TrainRequest("vocoder", vae_model), read_model_state(vae_model), UI_TERMS), Question
    )
    before = vae_model.read_bytes()
    with ModelLock(vae_model, owner="distillgan train vocoder"):
        with pytest.raises(ModelLockedError, match=r"in use by distillgan train vocoder \(pid \d+"):
            JobManager(vae_model.parent).submit(TrainRequest("vocoder", vae_model))
        with pytest.raises(ModelLockedError, match="in use by distillgan train vocoder"):
            JobManager(vae_model.parent).submit(TrainRequest("vae", vae_model, corpus_dir=tiny_corpus))
        refused = invoke(["train", "vocoder", "tiny", "--recipe", "vocoder_tiny"], input="y\n")
        assert_one_line_error(refused, "in use by distillgan train vocoder")
        assert "Replace it?" not in refused.stdout  # refused at once: nothing asked
    assert vae_model.read_bytes() == before


def test_a_ui_run_builds_its_config_once_and_its_interval_reaches_the_checkpoint(
    vae_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Form → request → plan (the config built once) → Trainer callback."""
    import distillgan.callbacks as callbacks
    import distillgan.recipes as recipes

    builds: list[Any] = []
    intervals: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        builds.append(args)
        return load_vocoder_config(*args, **kwargs)

    class Checkpoint(callbacks.ModelFileCheckpoint):
        def __init__(self, *args: Any, every_n_epochs: int = 1, **kwargs: Any) -> None:
            intervals.append(every_n_epochs)
            super().__init__(*args, every_n_epochs=every_n_epochs, **kwargs)

    monkeypatch.setattr(recipes, "load_vocoder_config", counted)
    monkeypatch.setattr(callbacks, "ModelFileCheckpoint", Checkpoint)
    manager = JobManager(vae_model.parent)
    request = TrainRequest(
        "vocoder",
        vae_model,
        train={"checkpoint_interval": 3, "accelerator": "cpu"},
        epochs=1,
        recipe="vocoder_tiny",
    )
    job = manager.submit(request)
    deadline = time.monotonic() + 300
    while job.active and time.monotonic() < deadline:
        time.sleep(0.2)
    view = job.view()
    assert view.state == "finished", view.error
    assert len(builds) == 1, "the run's config was built more than once"
    assert job.plan.cfg.train.checkpoint_interval == 3 and intervals == [3]
    assert view.estimate and view.estimate.startswith("Run length: 1 epoch × 8 generator steps")


def test_a_saved_unfinished_run_gives_the_forms_its_real_settings(vae_model: Path, tiny_corpus: Path) -> None:
    from distillgan.runs import saved_settings

    assert saved_settings(read_model_state(vae_model), "vocoder") is None  # no run: the recipe's values
    train_tiny_vocoder(vae_model, tiny_corpus, cancel_after=3, epochs=5)
    settings = saved_settings(read_model_state(vae_model), "vocoder")
    tiny = load_vocoder_config(None, {"train": {"keep_checkpoint": True}}, recipe="vocoder_tiny").train
    assert settings is not None
    assert settings["recipe"] == "vocoder_tiny" and settings["epochs"] == 5  # the run's own total
    assert (settings["batch_size"], settings["lr"], settings["init"]) == (tiny.batch_size, tiny.lr, tiny.init)
    assert settings["keep_checkpoint"] is True


def test_the_recipe_alone_says_where_and_at_what_precision_a_run_computes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distillgan.cli.train as cli_train
    from distillgan.recipes import load_vae_config
    from distillgan.training import TrainerOptions

    # the command line's --accelerator and --precision are overrides of the recipe, like --lr;
    # only devices, nodes and strategy travel beside it
    started: list[tuple[TrainRequest, Any]] = []
    monkeypatch.setattr(
        cli_train, "run_training", lambda request, options: started.append((request, options))
    )
    asked = [
        "--accelerator",
        "cpu",
        "--precision",
        "bf16-mixed",
        "--devices",
        "2",
        "--models-dir",
        str(tmp_path),
    ]
    assert invoke(["train", "vae", str(tmp_path), *asked]).exit_code == 0
    request, options = started[0]
    assert request.train == {"accelerator": "cpu", "precision": "bf16-mixed"}
    assert options == TrainerOptions(devices=2)
    fresh = plan_run(request, ModelState(request.model_path), UI_TERMS)  # a new model
    assert isinstance(fresh, Plan)
    assert (fresh.cfg.train.accelerator, fresh.cfg.train.precision) == ("cpu", "bf16-mixed")

    # a resumed VAE keeps its stored recipe but for where and at what precision it computes
    stored = cfg_lib.to_dict(load_vae_config(None, {"train": {"lr": 0.01}}))
    state = trained_vae(
        vae=VAERecord(status="partial", epochs_completed=1, config=stored), vae_checkpoint=True
    )
    changed = {"accelerator": "cpu", "precision": "bf16-mixed", "lr": 0.5}
    resumed = plan_run(TrainRequest("vae", MODEL, train=changed, resume=True), state, UI_TERMS)
    assert isinstance(resumed, Plan) and resumed.resume
    assert (resumed.cfg.train.accelerator, resumed.cfg.train.precision) == ("cpu", "bf16-mixed")
    assert resumed.cfg.train.lr == 0.01 and resumed.ignored == ("lr",)
