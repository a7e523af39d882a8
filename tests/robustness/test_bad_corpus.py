"""A corpus full of odd files: every bad one gets its one-line verdict, every odd-but-good one is
used, and both training stages run on what is good -- through the CLI."""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from distillgan.corpus import check_file
from distillgan.modelfile import open_model
from tests.cli.conftest import invoke
from tests.robustness.harness import TINY_VAE, TINY_VOCODER, write_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 330.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    mono = 0.4 * np.sin(2 * np.pi * freq * t) * np.exp(-t)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def write(path: Path, audio: np.ndarray, rate: int, subtype: str, **kwargs: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype=subtype, **kwargs)


def truncated(path: Path) -> None:
    write(path, tone(2.0, 44_100), 44_100, "PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])  # an interrupted copy: 1.2 s of the 2 s left


def nan_inside(path: Path) -> None:
    audio = tone(1.0, 44_100)
    audio[1000] = np.nan
    write(path, audio, 44_100, "FLOAT")


def inf_inside(path: Path) -> None:
    audio = tone(1.0, 44_100)
    audio[-1] = np.inf
    write(path, audio, 44_100, "DOUBLE")


# name -> (how to make it, the verdict reason; None: a good file, used for training)
KINDS: dict[str, tuple[Callable[[Path], None], str | None]] = {
    # odd but good: rates 8-192 kHz, 1-8 channels, 8/16/24/32-bit int and 32/64-bit float, names
    "8k u8 mono.wav": (lambda p: write(p, tone(0.55, 8_000), 8_000, "PCM_U8"), None),
    "192k 8ch int32.wav": (lambda p: write(p, tone(0.55, 192_000, 8), 192_000, "PCM_32"), None),
    "Régions d'été/prise n°2 – 音.flac": (lambda p: write(p, tone(0.55, 48_000, 2), 48_000, "PCM_24"), None),
    "take [red]3ch float.wav": (lambda p: write(p, tone(0.55, 96_000, 3), 96_000, "FLOAT"), None),
    "5ch double 22k.wav": (lambda p: write(p, tone(0.55, 22_050, 5), 22_050, "DOUBLE"), None),
    "mono 16 bit.aiff": (lambda p: write(p, tone(0.55, 44_100), 44_100, "PCM_16", format="AIFF"), None),
    # bad: each gets its reason
    "corrupt [/bold].wav": (
        lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(200))),
        "unreadable or corrupt",
    ),
    "cut short.wav": (truncated, "truncated (the file ends after 1.20 s, before its audio data does)"),
    "notes.wav": (lambda p: p.write_text("notes about the session, not a recording"), "not audio"),
    "zero length.wav": (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "header only.wav": (
        lambda p: write(p, np.zeros((0, 1), np.float32), 44_100, "PCM_16"),
        "empty (0 samples)",
    ),
    "silence.flac": (lambda p: write(p, np.zeros((44_100, 2), np.float32), 44_100, "PCM_16"), "silent"),
    "nan.wav": (nan_inside, "contains NaN/Inf"),
    "inf.wav": (inf_inside, "contains NaN/Inf"),
    "hit.wav": (lambda p: write(p, tone(0.1, 44_100), 44_100, "PCM_16"), None),  # a one-shot: kept
    "blip.wav": (lambda p: write(p, tone(0.01, 44_100), 44_100, "PCM_16"), "too short (10 ms < 20 ms)"),
    "loop.wav": (lambda p: p.symlink_to(p), "unreadable (Too many levels of symbolic links)"),
    "gone.wav": (lambda p: p.symlink_to(p.parent / "nowhere.wav"), "file not found (broken link?)"),
    "locked.wav": (lambda p: write(p, tone(0.8, 44_100), 44_100, "PCM_16"), "permission denied"),
    "locked folder": (lambda p: (p / "inside.wav").parent.mkdir(), "folder not readable"),
}


def build_corpus(root: Path) -> dict[str, str | None]:
    for name, (make, _) in KINDS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    (root / "sub" / "back to the top").parent.mkdir()
    (root / "sub" / "back to the top").symlink_to(root, target_is_directory=True)  # a folder loop
    return {name: reason for name, (_, reason) in KINDS.items()}


def deny(monkeypatch: pytest.MonkeyPatch, file: Path, folder: Path) -> None:
    """Tests run as root, who may read anything: make the OS refuse these two instead."""
    real_open, real_scandir = builtins.open, os.scandir

    def refusing_open(target: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(target, (str, os.PathLike)) and Path(target) == file:
            raise PermissionError(13, "Permission denied", str(target))
        return real_open(target, *args, **kwargs)

    def refusing_scandir(target: Any = ".") -> Any:
        if isinstance(target, (str, os.PathLike)) and Path(target) == folder:
            raise PermissionError(13, "Permission denied", str(target))
        return real_scandir(target)

    monkeypatch.setattr(builtins, "open", refusing_open)
    monkeypatch.setattr(os, "scandir", refusing_scandir)


@pytest.mark.timeout(600)
def test_every_bad_file_gets_its_verdict_and_both_stages_train_on_the_good_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "odd corpus"
    expected = build_corpus(root)
    deny(monkeypatch, root / "locked.wav", root / "locked folder")
    models = tmp_path / "models"
    vae_recipe = write_recipe(tmp_path / "vae.yaml", TINY_VAE, epochs=2)
    vocoder_recipe = write_recipe(tmp_path / "vocoder.yaml", TINY_VOCODER, preview_interval=100)

    result = invoke(
        ["train", "vae", str(root), "--name", "odd", "--config", str(vae_recipe), "--models-dir", str(models)]
    )
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("warning: skipping ") for line in warnings), result.stderr
    verdicts = {}
    for line in warnings:
        path, reason = line.removeprefix("warning: skipping ").split(": ", 1)
        verdicts[Path(path).relative_to(root).as_posix()] = reason
    bad = {name: reason for name, reason in expected.items() if reason is not None}
    assert verdicts == bad
    good = sorted(name for name, reason in expected.items() if reason is None)
    skipped_files = len(bad) - 1  # the unreadable folder is reported, but it is not a file
    assert f"Corpus: {len(good)} files" in result.stdout and f"{skipped_files} skipped" in result.stdout
    model = models / "odd.distillgan"
    manifest = open_model(model).attrs("dataset")["manifest"]
    manifest = json.loads(manifest) if isinstance(manifest, str) else manifest
    assert sorted(f["path"] for f in manifest["files"]) == good
    assert open_model(model).attrs("vae")["summary"]

    # the vocoder stage finds the good files again through the manifest, and trains on them
    result = invoke(
        [
            "train",
            "vocoder",
            "odd",
            "--config",
            str(vocoder_recipe),
            "--epochs",
            "1",
            "--models-dir",
            str(models),
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert f"Corpus: {len(good)} files" in result.stdout and "Vocoder training complete" in result.stdout
    assert open_model(model).attrs("vocoder")["status"] == "complete"


def test_truncated_files_are_told_apart_from_streams_of_unknown_length(tmp_path: Path) -> None:
    path = tmp_path / "cut.aiff"
    write(path, tone(2.0, 44_100), 44_100, "PCM_16", format="AIFF")
    path.write_bytes(path.read_bytes()[:100_000])
    assert check_file(path)[0].reason.startswith("truncated (the file ends after ")  # type: ignore[union-attr]
    # a recorder that streams writes "maximum size" headers: not a truncation, the audio is used
    stream = tmp_path / "stream.wav"
    write(stream, tone(1.0, 44_100), 44_100, "PCM_16")
    data = bytearray(stream.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    data[data.find(b"data") + 4 : data.find(b"data") + 8] = b"\xff\xff\xff\xff"
    stream.write_bytes(bytes(data))
    verdict, audio = check_file(stream)
    assert verdict.ok and audio is not None and verdict.duration_s == pytest.approx(1.0)
