"""The Train tab in a real browser: VAE then vocoder, live progress, cancel, resume, replace, locks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from playwright.sync_api import expect

from distillgan.modelfile import open_model
from distillgan.progress import resume_after
from distillgan.training import logged_history
from distillgan.ui.train_tab import NEW_LABEL
from tests.ui.conftest import (
    Served,
    choose,
    field,
    full_page_screenshot,
    markdown,
    open_advanced,
    wait_for_line,
)


def start_tiny_vocoder(page: object, model: str, recipes: dict[str, Path], epochs: int) -> None:
    choose(page, "train-model", model)
    expect(page.locator("#vocoder-start")).to_be_enabled()
    open_advanced(page, "vocoder")
    field(page, "vocoder-recipe-file").fill(str(recipes["vocoder"]))
    field(page, "vocoder-epochs").fill(str(epochs))
    page.locator("#vocoder-start").click()


def saved_epoch(page: object) -> int:
    status = page.locator("#vocoder-status")
    expect(status).to_contain_text("Resume anytime.", timeout=90_000)
    return int(re.search(r"Checkpoint saved at epoch (\d+)\. Resume anytime\.", status.inner_text())[1])


def x_axis_start(page: object, elem_id: str) -> float:
    """Where the x axis of the chart ``elem_id`` starts (from vega's description of the axis)."""
    labels = page.evaluate(  # type: ignore[attr-defined]
        f"""() => [...document.querySelectorAll('#{elem_id} svg g.role-axis')]
            .map(g => g.getAttribute('aria-label') || '')"""
    )
    found = [re.search(r"^X-axis .* values from (\S+) to", label) for label in labels]
    return float(next(match[1] for match in found if match))


def test_vocoder_section_unlocks_when_the_vae_finishes(page, corpus, recipes, served) -> None:
    choose(page, "train-model", NEW_LABEL)
    expect(page.locator("#vocoder-start")).to_be_disabled()
    expect(page.locator("#vocoder-notice")).to_contain_text("Train the VAE first")
    field(page, "vae-corpus").fill(str(corpus))
    field(page, "vae-name").fill("fresh")
    open_advanced(page, "vae")
    field(page, "vae-recipe-file").fill(str(recipes["vae"]))
    page.locator("#vae-start").click()

    expect(page.locator("#vae-status")).to_contain_text("VAE training complete", timeout=90_000)
    # no reload: the same page unlocks the vocoder section once the VAE is in the file
    expect(page.locator("#vocoder-start")).to_be_enabled()
    expect(page.locator("#vocoder-notice")).to_contain_text("No per-model vocoder yet")
    expect(field(page, "vocoder-lr")).to_be_editable()
    expect(page.locator("#vae-tensorboard")).to_contain_text("tensorboard --logdir")
    summary = json.loads(open_model(served.models_dir / "fresh.distillgan").attrs("vae")["summary"])
    assert summary["status"] == "complete"


def test_vocoder_training_cancel_resume_and_replace(page, vae_model, recipes) -> None:
    start_tiny_vocoder(page, vae_model.stem, recipes, epochs=40)  # cancelled long before the end

    # live: chart lines, the stats table, a preview player labelled with its epoch, the log dir
    expect(page.locator("#preview-0")).to_be_visible(timeout=90_000)
    expect(page.locator("#preview-0")).to_contain_text(re.compile(r"Epoch \d+ · clip 1"))
    status = page.locator("#vocoder-status")
    expect(status).to_contain_text("Training the vocoder")
    for header in ("Progress", "G total (weighted)", "D loss", "mel error", "ETA"):
        expect(status).to_contain_text(header)
    expect(status).to_contain_text(re.compile(r"\d+ of 40 epochs done"))
    expect(page.locator("#vocoder-tensorboard")).to_contain_text(str(vae_model.parent / "runs"))
    wait_for_line(page, "vocoder-loss-chart")
    wait_for_line(page, "vocoder-mel-chart")
    expect(page.locator("#vocoder-loss-chart")).to_contain_text("D loss")
    full_page_screenshot(
        page, "train-tab-mid-training.png", charts=("vocoder-loss-chart", "vocoder-mel-chart")
    )
    expect(status).to_contain_text("Training the vocoder")  # still mid-training when it was taken

    # cancel: the message names the epoch of the checkpoint that is really in the file
    page.locator("#vocoder-cancel").click()
    epoch = saved_epoch(page)
    vocoder = open_model(vae_model).attrs("vocoder")
    assert open_model(vae_model).has("vocoder_checkpoint")
    assert (vocoder["status"], vocoder["epochs_completed"]) == ("partial", epoch)
    steps_at_cancel = vocoder["steps"]
    expect(page.locator("#vocoder-cancel")).to_be_disabled()

    # starting again asks, every time; the resumed run is given a nearer end
    field(page, "vocoder-epochs").fill(str(epoch + 2))
    page.locator("#vocoder-start").click()
    # offered after the epochs the saved state completed (one wording: distillgan.progress)
    expect(markdown(page, "vocoder-question")).to_have_text(
        f"{resume_after(vocoder['epochs_completed'])} or start fresh?"
    )
    expect(page.locator("#vocoder-answer-2")).to_have_text("Start fresh")
    page.locator("#vocoder-answer-1").click()
    expect(status).to_contain_text("Resuming the vocoder")
    expect(status).to_contain_text("Vocoder training complete", timeout=120_000)
    # the charts go on from the cancelled run's logged history instead of starting again
    runs = vae_model.parent / "runs" / vae_model.stem / "tensorboard"
    resumed_run = max(runs.glob("vocoder-*"))
    first_logged = min(step for step, _, _ in logged_history(resumed_run, "vocoder", steps_at_cancel))
    assert x_axis_start(page, "vocoder-mel-chart") <= first_logged < steps_at_cancel
    full_page_screenshot(page, "train-tab-resumed.png", charts=("vocoder-loss-chart", "vocoder-mel-chart"))
    vocoder = open_model(vae_model).attrs("vocoder")
    assert (vocoder["status"], vocoder["epochs_completed"]) == ("complete", epoch + 2)
    assert not open_model(vae_model).has("vocoder_checkpoint")

    # a complete vocoder is only replaced after confirming; "Keep it" changes nothing
    before = vae_model.stat().st_mtime_ns
    page.locator("#vocoder-start").click()
    expect(markdown(page, "vocoder-question")).to_have_text(
        "This model already has a trained vocoder. Replace it?"
    )
    expect(page.locator("#vocoder-answer-2")).to_be_hidden()
    page.locator("#vocoder-dismiss").click()
    expect(page.locator("#vocoder-message")).to_contain_text("Nothing was changed.")
    expect(page.locator("#vocoder-dialog")).to_be_hidden()
    assert vae_model.stat().st_mtime_ns == before


def test_a_second_tab_shows_the_live_run_and_nothing_else_can_start(open_page, vae_model, recipes) -> None:
    first, second = open_page(), open_page()
    choose(second, "train-model", vae_model.stem)
    start_tiny_vocoder(first, vae_model.stem, recipes, epochs=50)
    expect(first.locator("#vocoder-status")).to_contain_text("Training the vocoder", timeout=60_000)

    # the model is in use: in every tab neither stage can start (no question to answer, then refuse)
    for page in (first, second):
        expect(page.locator("#vae-start")).to_be_disabled()
        expect(page.locator("#vocoder-start")).to_be_disabled()
    # the other tab shows the same live run: its status, its charts and a working cancel
    expect(second.locator("#vocoder-status")).to_contain_text("Training the vocoder")
    wait_for_line(second, "vocoder-loss-chart")
    expect(second.locator("#vocoder-dialog")).to_be_hidden()
    expect(second.locator("#vocoder-cancel")).to_be_enabled()

    # reloaded mid-run, a page shows the run's real settings, not the form's defaults
    second.reload()
    second.wait_for_function(
        "() => document.querySelector('#train-summary [data-testid=markdown]')?.innerText.trim()"
    )
    choose(second, "train-model", vae_model.stem)
    expect(field(second, "vocoder-epochs")).to_have_value("50")
    open_advanced(second, "vocoder")
    expect(field(second, "vocoder-recipe-file")).to_have_value(str(recipes["vocoder"]))
    expect(field(second, "vocoder-checkpoint-interval")).to_have_value("1")  # the tiny recipe's
    expect(field(second, "vocoder-batch-size")).to_have_value("2")

    second.locator("#vocoder-cancel").click()  # any tab can stop the run; both see the save
    saved_epoch(first)
    saved_epoch(second)
    expect(first.locator("#vae-start")).to_be_enabled()
    expect(field(first, "vocoder-recipe-file")).to_have_value(str(recipes["vocoder"]))


def test_a_failure_inside_training_is_shown(page, served, corpus, recipes) -> None:
    from tests.ui.conftest import _train_vae

    moved = corpus.parent / "corpus-that-moves"
    shutil.copytree(corpus, moved)
    path = served.models_dir / "orphan.distillgan"
    _train_vae(path, moved)
    shutil.rmtree(moved)

    start_tiny_vocoder(page, "orphan", recipes, epochs=2)
    status = page.locator("#vocoder-status")
    expect(status).to_contain_text("Training failed", timeout=180_000)  # a loaded CI machine is slow
    expect(status).to_contain_text(str(moved))
    expect(status).to_contain_text("Advanced → 'Corpus folder, if it moved'")  # what to do, in UI terms
    expect(page.locator("#vocoder-cancel")).to_be_disabled()
    assert not open_model(path).has("vocoder")


def test_model_names_from_the_browser_are_names_never_paths(served, tmp_path: Path) -> None:
    """A value typed into (or forged for) a model box reaches no file outside the models folder:
    nothing is read, trained, generated or written there (handlers called as Gradio calls them)."""
    from tests.vocoders.model_files import write_model_file

    (tmp_path / "elsewhere").mkdir()
    victim = write_model_file(tmp_path / "elsewhere" / "victim.distillgan", vocoder={})
    before = victim.read_bytes()
    train, generate = served.app.train, served.app.generate
    stem = victim.with_suffix("")
    for value in (str(stem), os.path.relpath(stem, served.models_dir)):
        summary = train.on_select(value, {})[train.summary]
        assert "is not a valid model name" in summary and "VAE" not in summary
        for section in (train.vae, train.vocoder):
            data = {component: "" for component in section.form.values()}
            data |= {train.model: value, train.corpus_dir: "", train.new_name: "", train.seen: {}}
            assert "is not a valid model name" in train.on_start(section, data)[section.message]
        error = generate.on_generate(value, 1, 1.0, 44100, "16", "hifigan")[2]
        assert "is not a valid model name" in error["value"]
        assert generate.on_model(value, "hifigan")[1] == generate.on_model(None, "hifigan")[1]
    assert victim.read_bytes() == before
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.distillgan", "victim.distillgan.lock"]
    assert not (tmp_path / "generated").exists() and not list(tmp_path.glob("*.wav"))


def test_start_from_chooses_where_the_vocoder_starts(page, vae_model, recipes) -> None:
    """The "Start from" box reaches the run: the prior refuses the tiny recipe's generator shape
    in one line; scratch trains, and the model file records it."""
    name = vae_model.stem
    choose(page, "train-model", name)
    expect(page.locator("#train-summary")).to_contain_text(name)  # this model's page, not the last one's
    expect(page.locator("#vocoder-start")).to_be_enabled()
    open_advanced(page, "vocoder")
    field(page, "vocoder-recipe-file").fill(str(recipes["vocoder"]))
    field(page, "vocoder-epochs").fill("1")
    choose(page, "vocoder-init", "Universal prior (fine-tune)")
    page.locator("#vocoder-start").click()
    status = page.locator("#vocoder-status")
    expect(status).to_contain_text("cannot start from the prior", timeout=60_000)
    assert not open_model(vae_model).has("vocoder")

    choose(page, "vocoder-init", "Scratch")
    page.locator("#vocoder-start").click()
    expect(status).to_contain_text("Vocoder training complete", timeout=90_000)
    assert open_model(vae_model).attrs("vocoder")["started_from"] == "scratch"


def test_a_tick_before_the_page_has_loaded_updates_nothing(served: Served) -> None:
    # on a loaded host the timer can fire before the page's load event has run: Gradio must
    # accept the tick's answer (an empty dict counted as one value for 80 outputs and failed)
    blocks = served.app.blocks  # type: ignore[attr-defined]
    tick = next(fn for fn in blocks.fns.values() if fn.name == "on_tick")
    answer = served.app.train.on_tick(None, {})  # type: ignore[attr-defined]
    # in a thread of its own: the browser tests leave an event loop running in this one
    with ThreadPoolExecutor(1) as thread:
        updates = thread.submit(asyncio.run, blocks.postprocess_data(tick, answer, None)).result()
    # every output left as it is (Gradio answers None for a state it leaves alone)
    assert len(updates) == len(tick.outputs) and all(u in ({"__type__": "update"}, None) for u in updates)
