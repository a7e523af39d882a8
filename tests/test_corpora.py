"""Uploaded corpora: saved only as a new folder inside the models folder, only sound files; and a
corpus listed for auditioning."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from distillgan import corpora
from distillgan.audio import write_audio
from distillgan.errors import CorpusError, DistillganError, ModelFileError
from distillgan.examples import synth_bell, synth_pluck
from distillgan.mel import SAMPLE_RATE
from distillgan.ui.corpus import AUDITION_SECONDS, audition, listing_note


@pytest.fixture
def dropped(tmp_path: Path) -> list[Path]:
    """Files as Gradio hands them over: each in a temp folder of its own, under its own name."""
    files = []
    for i, (name, sound) in enumerate(
        [("kick.wav", synth_pluck(0.3, seed=1)), ("bell.flac", synth_bell(0.5, seed=2))]
    ):
        folder = tmp_path / "gradio" / f"upload{i}"
        folder.mkdir(parents=True)
        write_audio(folder / name, sound, SAMPLE_RATE)
        files.append(folder / name)
    return files


def test_an_upload_becomes_a_new_corpus_folder_in_the_models_folder(
    tmp_path: Path, dropped: list[Path]
) -> None:
    models = tmp_path / "models"
    folder = corpora.save_upload(dropped, "drums", models)
    assert folder == models / "corpora" / "drums"
    assert sorted(p.name for p in folder.iterdir()) == ["bell.flac", "kick.wav"]
    assert (folder / "kick.wav").read_bytes() == dropped[0].read_bytes()
    assert corpora.corpus_files(folder) == [folder / "bell.flac", folder / "kick.wav"]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "/tmp/x"])
def test_a_name_is_checked_as_a_model_name_never_a_path(
    tmp_path: Path, dropped: list[Path], name: str
) -> None:
    models = tmp_path / "models"
    with pytest.raises(ModelFileError, match="is not a valid model name"):
        corpora.save_upload(dropped, name, models)
    assert not models.exists() and not (tmp_path / "escape").exists()


def test_non_audio_is_refused_by_name_and_nothing_is_saved(tmp_path: Path, dropped: list[Path]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("setlist")
    fake = tmp_path / "fake.wav"  # a sound file's name, not its content
    fake.write_text("not audio at all")
    with pytest.raises(CorpusError) as caught:
        corpora.save_upload([*dropped, notes, fake], "mixed", tmp_path / "models")
    message = str(caught.value)
    assert "not sound files: notes.txt, fake.wav" in message and "nothing was saved" in message
    assert "\n" not in message
    assert not (tmp_path / "models" / "corpora" / "mixed").exists()


def test_an_existing_corpus_or_model_of_that_name_is_never_touched(
    tmp_path: Path, dropped: list[Path]
) -> None:
    models = tmp_path / "models"
    first = corpora.save_upload(dropped[:1], "rain", models)
    before = (first / "kick.wav").read_bytes()
    with pytest.raises(CorpusError, match="a corpus folder named 'rain' already exists"):
        corpora.save_upload(dropped, "rain", models)
    assert [p.name for p in first.iterdir()] == ["kick.wav"] and (first / "kick.wav").read_bytes() == before

    (models / "wind.distillgan").write_bytes(b"a model")
    with pytest.raises(CorpusError, match="a model named 'wind' already exists"):
        corpora.save_upload(dropped, "wind", models)
    assert not (models / "corpora" / "wind").exists()


def test_two_files_of_one_name_and_no_files_are_refused(tmp_path: Path, dropped: list[Path]) -> None:
    again = tmp_path / "elsewhere" / "KICK.wav"
    again.parent.mkdir()
    shutil.copyfile(dropped[0], again)
    with pytest.raises(CorpusError, match=r"two files are named KICK\.wav"):
        corpora.save_upload([dropped[0], again], "twice", tmp_path / "models")
    with pytest.raises(CorpusError, match="choose the sound files"):
        corpora.save_upload([], "none", tmp_path / "models")


def test_a_failed_copy_keeps_nothing(
    tmp_path: Path, dropped: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = []
    real_copy = shutil.copyfile

    def copy_then_fill_the_disk(source: Path, target: Path) -> None:
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(real_copy(source, target))

    monkeypatch.setattr(corpora.shutil, "copyfile", copy_then_fill_the_disk)
    with pytest.raises(DistillganError, match=r"No space left on device.*nothing was kept"):
        corpora.save_upload(dropped, "full", tmp_path / "models")
    assert copied and not (tmp_path / "models" / "corpora" / "full").exists()


def test_a_corpora_link_out_of_the_models_folder_is_refused(tmp_path: Path, dropped: list[Path]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, models / "corpora")
    with pytest.raises(CorpusError, match="leads out of the models folder"):
        corpora.save_upload(dropped, "sneaky", models)
    assert list(outside.iterdir()) == []


def test_a_models_corpus_is_its_manifest_files_inside_its_folder() -> None:
    manifest = {
        "root": "/sounds",
        "files": [{"path": "a.wav"}, {"path": "sub/b.wav"}, {"path": "../etc/c.wav"}, {"path": "/d.wav"}, 3],
    }
    assert corpora.manifest_files(manifest) == (
        Path("/sounds"),
        [Path("/sounds/a.wav"), Path("/sounds/sub/b.wav")],
    )
    with pytest.raises(CorpusError, match="malformed"):
        corpora.manifest_files({"files": []})
    with pytest.raises(CorpusError, match="is not a folder"):
        corpora.corpus_files("/no/such/folder")


def test_audition_gives_the_first_seconds_of_the_first_files(tmp_path: Path) -> None:
    long = np.resize(synth_pluck(1.0, seed=3), int((AUDITION_SECONDS + 5) * SAMPLE_RATE)).astype(np.float32)
    write_audio(tmp_path / "long.wav", long, SAMPLE_RATE)
    (tmp_path / "broken.wav").write_bytes(b"RIFF")
    files = [tmp_path / "broken.wav", tmp_path / "long.wav", tmp_path / "unheard.wav"]
    heard = audition(tmp_path, files, limit=2)
    assert [h.label for h in heard] == ["broken.wav", "long.wav"]
    assert heard[0].audio is None
    rate, samples = heard[1].audio
    assert rate == SAMPLE_RATE and len(samples) == int(AUDITION_SECONDS * SAMPLE_RATE)
    np.testing.assert_allclose(samples / 32768, long[: len(samples)], atol=2 / 32768)
    assert listing_note(tmp_path, 3, 2).endswith("(1 more not shown).")
    assert "No sound files" in listing_note(tmp_path, 0, 0)
