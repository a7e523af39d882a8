"""The corpus in a real browser: drop sound files, get a new corpus folder in the models folder,
audition it, and create the model from it."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from distillgan.modelfile import open_model
from distillgan.ui.train_tab import NEW_LABEL
from tests.ui.conftest import Served, choose, field, full_page_screenshot, open_advanced


def drop(page: object, files: list[Path]) -> None:
    page.locator("#corpus-upload input[type=file]").set_input_files([str(f) for f in files])  # type: ignore[attr-defined]
    for path in files:
        expect(page.locator("#corpus-upload")).to_contain_text(path.stem)  # type: ignore[arg-type]


def test_uploaded_sounds_become_a_corpus_folder_and_a_model(
    open_page, served: Served, corpus: Path, recipes: dict[str, Path], tmp_path: Path
) -> None:
    sounds = sorted(corpus.glob("*.wav"))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a sound")
    folder = served.models_dir / "corpora" / "dropped"

    page = open_page()
    choose(page, "train-model", NEW_LABEL)
    field(page, "vae-name").fill("dropped")
    drop(page, [*sounds, notes])
    page.locator("#corpus-upload-save").click()
    expect(page.locator("#corpus-upload-message")).to_contain_text(
        "not sound files: notes.txt", timeout=30_000
    )
    assert not folder.exists()  # refused whole: nothing saved

    page = open_page()  # a fresh form (the refused files are still in the first one)
    choose(page, "train-model", NEW_LABEL)
    field(page, "vae-name").fill("dropped")
    drop(page, sounds)
    page.locator("#corpus-upload-save").click()
    expect(page.locator("#corpus-upload-message")).to_contain_text(
        f"Saved {len(sounds)} sound files", timeout=30_000
    )
    expect(field(page, "vae-corpus")).to_have_value(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in sounds]
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in sounds)

    # the corpus, listed with players to audition it
    page.locator("#corpus-listing").get_by_text("Listen to the corpus").click()
    expect(page.locator("#corpus-note")).to_contain_text(f"{len(sounds)} sound files")
    for i, path in enumerate(sounds):
        expect(page.locator(f"#corpus-player-{i}")).to_be_visible()
        expect(page.locator(f"#corpus-player-{i}")).to_contain_text(path.name)
        # loaded and playable: the player knows the sound's length (0.6 s shows as 0:01)
        expect(page.locator(f"#corpus-player-{i} #duration")).to_have_text("0:01", timeout=30_000)
    full_page_screenshot(page, "upload-corpus.png")

    # the same name again never adds to (or overwrites) that corpus
    drop(page, sounds[:1])
    page.locator("#corpus-upload-save").click()
    expect(page.locator("#corpus-upload-message")).to_contain_text(
        "a corpus folder named 'dropped' already exists", timeout=30_000
    )

    # then the model is created from it, as from any corpus folder
    open_advanced(page, "vae")
    field(page, "vae-recipe-file").fill(str(recipes["vae"]))
    expect(field(page, "vae-recipe-file")).to_have_value(str(recipes["vae"]))  # type: ignore[arg-type]
    page.locator("#vae-start").click()
    expect(page.locator("#vae-status")).to_contain_text("VAE training complete", timeout=90_000)
    expect(page.locator("#train-summary")).to_contain_text(str(folder))
    manifest = open_model(served.models_dir / "dropped.distillgan").attrs("dataset")["manifest"]
    assert str(folder) in str(manifest)
