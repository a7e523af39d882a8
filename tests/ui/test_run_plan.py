"""The run plan in the browser: a model in use refused before any question, the CLI's rules and
messages for the form's numbers, the run length before a start and the go-ahead of a long run."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from playwright.sync_api import expect

from distillgan.modelfile import ModelLock, VocoderRecord, open_model
from distillgan.recipes import load_vocoder_config
from distillgan.runs import SETTINGS, read_model_state
from distillgan.ui import views
from tests.cli.conftest import invoke
from tests.ui.conftest import choose, field, full_page_screenshot, markdown, open_advanced


def test_a_model_in_use_elsewhere_is_refused_at_once_naming_its_holder(page, vae_model: Path) -> None:
    choose(page, "train-model", vae_model.stem)
    expect(page.locator("#vae-start")).to_have_text("Train VAE")
    with ModelLock(vae_model, owner="distillgan train vocoder"):  # e.g. a CLI run
        page.locator("#vae-start").click()
        message = page.locator("#vae-message")
        expect(message).to_contain_text(
            re.compile(r"is in use by distillgan train vocoder \(pid \d+ on .*, since \d\d:\d\d:\d\d\)")
        )
        # nothing destructive was asked first: the replace question never showed
        expect(page.locator("#vae-dialog")).to_be_hidden()
    assert open_model(vae_model).has("vae")


def test_the_form_refuses_negative_epochs_with_the_command_lines_message(
    page, vae_model: Path, served
) -> None:
    cli = invoke(
        ["train", "vocoder", vae_model.stem, "--epochs", "-3", "--models-dir", str(served.models_dir)]
    )
    assert cli.exit_code != 0
    message = str(SETTINGS["epochs"]._error("-3"))
    assert f"'--epochs': {message}" in cli.stderr

    choose(page, "train-model", vae_model.stem)
    expect(page.locator("#vocoder-start")).to_be_enabled()
    field(page, "vocoder-epochs").fill("-3")
    page.locator("#vocoder-start").click()
    expect(markdown(page, "vocoder-message")).to_have_text(f"⚠ {message}")
    expect(page.locator("#vocoder-status")).not_to_contain_text(re.compile("Preparing|Training|Waiting"))
    assert not open_model(vae_model).has("vocoder")


def test_a_run_estimated_over_an_hour_waits_for_the_go_ahead(page, vae_model: Path, recipes) -> None:
    choose(page, "train-model", vae_model.stem)
    expect(page.locator("#vocoder-start")).to_be_enabled()
    open_advanced(page, "vocoder")
    field(page, "vocoder-recipe-file").fill(str(recipes["vocoder"]))
    field(page, "vocoder-epochs").fill("1000000")  # days of training, even for the tiny recipe
    page.locator("#vocoder-start").click()

    question = page.locator("#vocoder-question")
    expect(question).to_contain_text("Run length: 1,000,000 epochs ×", timeout=90_000)
    expect(question).to_contain_text("That is over an hour: start it?")
    expect(question).to_contain_text("Estimated time: about")
    expect(page.locator("#vocoder-answer-1")).to_have_text("Start the run")
    expect(page.locator("#vocoder-status")).to_contain_text("Waiting for your go-ahead")
    full_page_screenshot(page, "run-length-confirmation.png")
    page.locator("#vocoder-dismiss").click()
    expect(page.locator("#vocoder-status")).to_contain_text("Cancelled before training started")
    expect(page.locator("#vocoder-dialog")).to_be_hidden()
    assert not open_model(vae_model).has("vocoder")

    # asked again on the next start; the go-ahead starts it, and the header counts its real total
    page.locator("#vocoder-start").click()
    expect(page.locator("#vocoder-answer-1")).to_have_text("Start the run", timeout=90_000)
    page.locator("#vocoder-answer-1").click()
    expect(page.locator("#vocoder-status")).to_contain_text("Training the vocoder", timeout=60_000)
    expect(page.locator("#vocoder-dialog")).to_be_hidden()
    expect(page.locator("#train-summary")).to_contain_text("of 1000000 epochs done", timeout=60_000)
    page.locator("#vocoder-cancel").click()
    expect(page.locator("#vocoder-status")).to_contain_text("Resume anytime.", timeout=90_000)


def test_a_short_run_shows_its_length_and_starts_at_once(page, vae_model: Path, recipes) -> None:
    choose(page, "train-model", vae_model.stem)
    open_advanced(page, "vocoder")
    field(page, "vocoder-recipe-file").fill(str(recipes["vocoder"]))
    field(page, "vocoder-epochs").fill("1")
    page.locator("#vocoder-start").click()
    status = page.locator("#vocoder-status")
    expect(status).to_contain_text(re.compile(r"Run length: 1 epoch × \d+ generator steps"), timeout=90_000)
    expect(status).to_contain_text("Vocoder training complete", timeout=90_000)
    expect(page.locator("#vocoder-dialog")).to_be_hidden()


def test_the_header_counts_a_live_resumed_run_to_its_own_total(vae_model: Path) -> None:
    """A stored run of 8 epochs resumed to 4: until the resumed run saves, the file says 8."""
    state = read_model_state(vae_model)
    stored = VocoderRecord(status="partial", epoch=2, epochs_completed=2, total_epochs=8)
    state = dataclasses.replace(state, vocoder=stored, vocoder_checkpoint=True)
    assert "vocoder unfinished (2 of 8 epochs done)" in views.model_summary(state)
    assert "vocoder unfinished (2 of 4 epochs done)" in views.model_summary(state, totals={"vocoder": 4})


def test_a_stored_unfinished_run_fills_the_form_when_its_model_is_picked(
    served, vae_model: Path, corpus
) -> None:
    """After a restart of the UI only the file knows the run: its stored recipe and total fill
    the form (handlers called as Gradio calls them)."""
    from tests.training_runs import train_tiny_vocoder

    train = served.app.train
    form = train.vocoder.form
    assert train.on_select(vae_model.stem, {})[form["epochs"]]["value"] == ""  # no run: the recipe's
    train_tiny_vocoder(vae_model, corpus, cancel_after=3, epochs=5)
    out = train.on_select(vae_model.stem, {})
    values = {key: out[component]["value"] for key, component in form.items()}
    tiny = load_vocoder_config(recipe="vocoder_tiny").train
    assert (
        values["epochs"] == "5"
        and values["batch_size"] == str(tiny.batch_size)
        and values["init"] == "scratch"
    )
    assert values["keep_checkpoint"] is True
    assert out[form["epochs"]]["interactive"] is True  # filled, and unlocked: nothing runs
