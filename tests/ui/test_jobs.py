"""The run plan as the UI asks it (questions, checks, stored recipes) and the background worker."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from distillgan import config as cfg_lib
from distillgan.errors import ConfigError, CorpusError, DistillganError
from distillgan.modelfile import VAERecord, VocoderRecord, open_model, vocoder_record
from distillgan.progress import ProgressEvent, checkpoint_saved
from distillgan.recipes import load_vae_config, load_vocoder_config
from distillgan.runs import ModelState, Plan, Question, TrainRequest, plan_run
from distillgan.ui import views
from distillgan.ui.jobs import UI_TERMS, Job, JobManager, setting_name
from tests.test_training import write_run
from tests.ui.conftest import TINY_VOCODER

MODEL = Path("/models/bells.distillgan")
STORED = load_vocoder_config(None, TINY_VOCODER)
VOCODER = VocoderRecord(
    config=cfg_lib.to_dict(STORED.generator), train_config=cfg_lib.to_dict(STORED.train), total_epochs=12
)


def model(**changes: object) -> ModelState:
    base = ModelState(
        MODEL, exists=True, vae=VAERecord(status="complete"), manifest={"root": "/corpus", "files": []}
    )
    return dataclasses.replace(base, **changes)


def partial(epoch: int) -> VocoderRecord:
    """Cancelled during ``epoch``: the ones before it are complete."""
    return dataclasses.replace(VOCODER, status="partial", epoch=epoch, epochs_completed=epoch - 1)


COMPLETE = dataclasses.replace(VOCODER, status="complete", epoch=12, epochs_completed=12)


def vocoder_request(**changes: object) -> TrainRequest:
    return dataclasses.replace(TrainRequest(stage="vocoder", model_path=MODEL), **changes)


def question_for(request: TrainRequest, state: ModelState) -> Question | None:
    """The plan's question, None when it plans the run."""
    outcome = plan_run(request, state, UI_TERMS)
    return outcome if isinstance(outcome, Question) else None


def check_request(request: TrainRequest, state: ModelState) -> None:
    plan_run(request, state, UI_TERMS)


def planned(request: TrainRequest, state: ModelState) -> Plan:
    outcome = plan_run(request, state, UI_TERMS)
    assert isinstance(outcome, Plan), outcome
    return outcome


def test_a_saved_vocoder_state_asks_resume_or_fresh_every_time() -> None:
    state = model(vocoder=partial(3), vocoder_checkpoint=True)
    question = question_for(vocoder_request(), state)
    assert question is not None
    assert question.text == "Resume after epoch 2 or start fresh?"  # cancelled during the 3rd
    assert question.options == (("Resume after epoch 2", "resume"), ("Start fresh", "fresh"))
    assert question_for(vocoder_request().answer("resume"), state) is None
    assert question_for(vocoder_request().answer("fresh"), state) is None


def test_a_complete_vocoder_is_replaced_only_when_confirmed() -> None:
    state = model(vocoder=COMPLETE)
    question = question_for(vocoder_request(), state)
    assert question is not None and question.text == "This model already has a trained vocoder. Replace it?"
    assert question.options == (("Replace it", "replace"),) and question.dismiss == "Keep it"
    assert question_for(vocoder_request().answer("replace"), state) is None
    # a kept training state of a complete run: first resume-or-fresh, then "fresh" needs the replace
    kept = model(vocoder=COMPLETE, vocoder_checkpoint=True)
    # 12 epochs done: resuming (with more epochs) continues after the 12th
    assert question_for(vocoder_request(), kept).options[0] == ("Resume after epoch 12", "resume")
    fresh = vocoder_request().answer("fresh")
    assert question_for(fresh, kept).text.endswith("Replace it?")
    assert question_for(fresh.answer("replace"), kept) is None
    assert question_for(vocoder_request(), model()) is None


def test_vae_questions_resume_then_replace(tmp_path: Path) -> None:
    request = TrainRequest(stage="vae", model_path=MODEL, corpus_dir=tmp_path)
    assert question_for(request, ModelState(MODEL)) is None  # a new model
    unfinished = model(vae=VAERecord(epoch=4, epochs_completed=3), vae_checkpoint=True)
    question = question_for(request, unfinished)
    assert question.text == "Model 'bells' has an unfinished VAE run. Resume after epoch 3 or start fresh?"
    assert question.kind == "resume"
    unfinished = dataclasses.replace(
        unfinished, vae=dataclasses.replace(unfinished.vae, config=cfg_lib.to_dict(load_vae_config()))
    )
    assert question_for(request.answer("resume"), unfinished) is None
    replace = question_for(request.answer("fresh"), model(vocoder=COMPLETE))
    assert replace.text == (
        "Model 'bells' already exists. Replace it? Its VAE and vocoder are trained again from scratch."
    )
    assert (replace.kind, replace.kept) == ("replace", "kept the existing model; nothing changed")
    assert question_for(request.answer("fresh").answer("replace"), model()) is None


def test_requests_that_cannot_start_are_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(DistillganError, match="has no trained VAE yet: train its VAE to the end first"):
        check_request(vocoder_request(), ModelState(MODEL))
    unfinished = model(vae=VAERecord(status="partial", epoch=2), vae_checkpoint=True)
    with pytest.raises(DistillganError, match="has no trained VAE yet"):
        check_request(vocoder_request(), unfinished)
    with pytest.raises(DistillganError, match="has no vocoder training state to resume: start again"):
        check_request(vocoder_request(resume=True), model(vocoder=COMPLETE))
    with pytest.raises(CorpusError, match="audio folder not found: /nowhere"):
        check_request(
            TrainRequest(stage="vae", model_path=MODEL, corpus_dir=Path("/nowhere")), ModelState(MODEL)
        )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.batch_sise'"):
        check_request(vocoder_request(recipe_file=recipe), model())
    with pytest.raises(ConfigError, match=r"'train\.lr' must be between"):
        check_request(vocoder_request(train={"lr": 5.0}), model())
    with pytest.raises(DistillganError, match="damaged"):
        check_request(vocoder_request(), model(error="/models/bells.distillgan is damaged"))


def test_a_resumed_vocoder_keeps_its_own_recipe() -> None:
    state = model(vocoder=partial(3), vocoder_checkpoint=True)
    changed = {
        "lr": 0.01,
        "batch_size": STORED.train.batch_size,
        "checkpoint_interval": 3,
        "precision": "bf16-mixed",
    }
    plan = planned(vocoder_request(train=changed, resume=True), state)
    cfg = plan.cfg
    assert plan.resume and cfg.train.lr == STORED.train.lr  # kept, and said so
    assert (cfg.train.checkpoint_interval, cfg.train.precision) == (3, "bf16-mixed")
    assert cfg.generator == STORED.generator
    assert plan.note(setting_name) == "resuming keeps the run's own recipe (learning rate ignored)"
    assert plan.epochs == 12  # the run's own total
    assert planned(vocoder_request(epochs=20, resume=True), state).epochs == 20


def test_a_resumed_run_charts_the_history_before_it(tmp_path: Path) -> None:
    logs = tmp_path / "tensorboard"
    write_run(logs / "vocoder-20260101-000001", 0, {"train/g_loss": [(3, 2.0)], "val/mel_l1": [(7, 0.75)]})
    state = model(vocoder=partial(2), vocoder_checkpoint=True)
    for resume, earlier in ((True, ((3, "train/g_loss", 2.0), (7, "val/mel_l1", 0.75))), (False, ())):
        job = Job(1, planned(vocoder_request(resume=resume), state), state, lock=None)  # type: ignore[arg-type]
        job.listener(ProgressEvent("vocoder", "start", step=8, path=str(logs / "vocoder-20260101-000002")))
        job.listener(ProgressEvent("vocoder", "step", step=9, metrics={"train/g_loss": 1.5, "lr": 0.1}))
        assert job.view().points == (*earlier, (9, "train/g_loss", 1.5))


def test_closing_the_ui_saves_a_running_training(served, vae_model: Path, recipes: dict[str, Path]) -> None:
    manager = JobManager(served.models_dir)
    job = manager.submit(
        TrainRequest(stage="vocoder", model_path=vae_model, recipe_file=recipes["vocoder"], epochs=200)
    )
    deadline = time.monotonic() + 60
    while job.view().last is None and time.monotonic() < deadline:  # until the first steps ran
        time.sleep(0.2)
    manager.shutdown(timeout=60)

    view = job.view()
    assert view.state == "finished" and view.result.status == "partial"
    vocoder = vocoder_record(open_model(vae_model))
    assert open_model(vae_model).has("vocoder_checkpoint")
    assert views.saved_line(view) == checkpoint_saved(vocoder.epochs_completed)
    assert not job.lock.held
