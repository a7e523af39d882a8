"""The audio core: verdicts, loading, resampling, scanning, corpus and manifest."""

from __future__ import annotations

import builtins
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distillgan.audio import SAMPLE_RATE, load_audio, resample, write_audio
from distillgan.corpus import (
    PACK_GAP_S,
    Corpus,
    CorpusFile,
    FileVerdict,
    build_manifest,
    check_file,
    check_manifest,
    format_duration,
    load_corpus,
    pack_short_sounds,
    scan_audio_files,
)
from distillgan.errors import CorpusError, ModelFileError


def sine(seconds: float, sr: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_sine(path: Path, seconds: float = 1.0, sr: int = SAMPLE_RATE, **kwargs: Any) -> Path:
    sf.write(str(path), sine(seconds, sr), sr, **kwargs)
    return path


def peak_frequency(audio: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sr)[np.argmax(spectrum)])


# --- verdicts --------------------------------------------------------------------------


def _text(path: Path) -> None:
    path.write_text("these are notes about a recording, not a recording\n")


def _corrupt_riff(path: Path) -> None:
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(64)))


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _zero_samples(path: Path) -> None:
    sf.write(str(path), np.zeros(0, np.float32), SAMPLE_RATE)


def _nan(path: Path) -> None:
    audio = sine(1.0, SAMPLE_RATE)
    audio[100] = np.nan
    sf.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")


def _inf(path: Path) -> None:
    audio = sine(1.0, SAMPLE_RATE)
    audio[-1] = -np.inf
    sf.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")


def _digital_silence(path: Path) -> None:
    sf.write(str(path), np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)


def _near_silence(path: Path) -> None:
    sf.write(str(path), sine(1.0, SAMPLE_RATE, amplitude=5e-5), SAMPLE_RATE, subtype="FLOAT")


def _short(path: Path) -> None:
    sf.write(str(path), sine(0.012, 22_050), 22_050)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_text, "not audio"),
        (_corrupt_riff, "unreadable or corrupt"),
        (_zero_bytes, "empty (0 bytes)"),
        (_zero_samples, "empty (0 samples)"),
        (_nan, "contains NaN/Inf"),
        (_inf, "contains NaN/Inf"),
        (_digital_silence, "silent"),
        (_near_silence, "silent"),
        (_short, "too short (12 ms < 20 ms)"),
    ],
)
def test_bad_file_gets_its_verdict(tmp_path: Path, make: Any, reason: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    verdict, audio = check_file(path)
    assert audio is None
    assert not verdict.ok
    assert verdict.reason == reason
    assert verdict.path == path
    assert reason in verdict.describe()


def test_bad_file_verdict_keeps_what_was_read(tmp_path: Path) -> None:
    verdict, _ = check_file(write_sine(tmp_path / "short.flac", seconds=0.25, sr=48_000))
    assert (verdict.sample_rate, verdict.channels) == (48_000, 1)
    assert verdict.duration_s == pytest.approx(0.25)


def test_permission_denied_is_a_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod cannot deny reading; simulate the OS refusing instead.
    locked = write_sine(tmp_path / "locked.wav")
    real_open = builtins.open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and Path(file) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    verdict, audio = check_file(locked)
    assert (verdict.ok, verdict.reason, audio) == (False, "permission denied", None)
    with pytest.raises(CorpusError, match="permission denied"):
        load_audio(locked)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_permission_denied_for_real(tmp_path: Path) -> None:
    locked = write_sine(tmp_path / "locked.wav")
    locked.chmod(0)
    try:
        assert check_file(locked)[0].reason == "permission denied"
    finally:
        locked.chmod(0o644)


def test_broken_link_is_a_verdict(tmp_path: Path) -> None:
    link = tmp_path / "gone.wav"
    link.symlink_to(tmp_path / "nowhere.wav")
    assert check_file(link)[0].reason == "file not found (broken link?)"


def test_load_audio_raises_one_line_corpus_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    _text(path)
    with pytest.raises(CorpusError) as caught:
        load_audio(path)
    assert str(caught.value) == f"cannot read {path}: not audio"


# --- good files ------------------------------------------------------------------------


def assert_canonical(audio: np.ndarray, seconds: float) -> None:
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert audio.flags.c_contiguous
    assert len(audio) == pytest.approx(seconds * SAMPLE_RATE, abs=2)
    assert np.isfinite(audio).all()


@pytest.mark.parametrize(
    "sr", [8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000]
)
def test_every_sample_rate_loads_as_canonical_audio(tmp_path: Path, sr: int) -> None:
    path = write_sine(tmp_path / f"s{sr}.wav", seconds=0.6, sr=sr, subtype="PCM_16")
    verdict, audio = check_file(path)
    assert verdict.ok and verdict.reason is None
    assert (verdict.sample_rate, verdict.channels) == (sr, 1)
    assert verdict.duration_s == pytest.approx(0.6)
    assert audio is not None
    assert_canonical(audio, 0.6)
    assert len(audio) == math.ceil(round(0.6 * sr) * SAMPLE_RATE / sr)
    assert peak_frequency(audio, SAMPLE_RATE) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("channels", range(1, 9))
def test_channels_are_averaged_to_mono(tmp_path: Path, channels: int) -> None:
    # Only the first channel carries sound, so the mono mix is that channel / channels.
    block = np.zeros((round(0.6 * 48_000), channels), np.float32)
    block[:, 0] = sine(0.6, 48_000, amplitude=0.8)
    sf.write(str(tmp_path / "multi.wav"), block, 48_000, subtype="FLOAT")
    verdict, audio = check_file(tmp_path / "multi.wav")
    assert verdict.ok and verdict.channels == channels
    assert audio is not None
    assert_canonical(audio, 0.6)
    assert np.abs(audio).max() == pytest.approx(0.8 / channels, rel=0.02)


def test_stereo_in_antiphase_mixes_to_silence(tmp_path: Path) -> None:
    tone = sine(1.0, SAMPLE_RATE)
    sf.write(str(tmp_path / "antiphase.wav"), np.stack([tone, -tone], axis=1), SAMPLE_RATE)
    assert check_file(tmp_path / "antiphase.wav")[0].reason == "silent (channels cancel out in the mono mix)"


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_wav_bit_depth_loads(tmp_path: Path, subtype: str) -> None:
    path = write_sine(tmp_path / "depth.wav", seconds=0.7, sr=22_050, subtype=subtype)
    verdict, audio = check_file(path)
    assert verdict.ok
    assert audio is not None
    assert_canonical(audio, 0.7)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "sr"),
    [
        ("a.flac", "FLAC", "PCM_24", 96_000),
        ("a.ogg", "OGG", "VORBIS", 44_100),
        ("a.opus", "OGG", "OPUS", 48_000),
        ("a.mp3", "MP3", "MPEG_LAYER_III", 44_100),
        ("a.aiff", "AIFF", "PCM_16", 32_000),
    ],
)
def test_compressed_and_other_containers_load(
    tmp_path: Path, name: str, fmt: str, subtype: str, sr: int
) -> None:
    path = write_sine(tmp_path / name, seconds=1.0, sr=sr, format=fmt, subtype=subtype)
    verdict, audio = check_file(path)
    assert verdict.ok, verdict.reason
    assert audio is not None
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / SAMPLE_RATE == pytest.approx(1.0, abs=0.06)  # codecs pad a little


def test_non_ascii_and_spaced_paths(tmp_path: Path) -> None:
    folder = tmp_path / "Régions d'été" / "ça va 音"
    folder.mkdir(parents=True)
    path = write_sine(folder / "prise n°1 – Ωmega.wav")
    assert_canonical(load_audio(path), 1.0)
    assert scan_audio_files(tmp_path) == [path]


def test_exotic_rate_uses_a_near_ratio_quickly(tmp_path: Path) -> None:
    # 22 254 Hz has no small exact ratio to 44 100 Hz; the result must still be right.
    path = write_sine(tmp_path / "odd.wav", seconds=1.0, sr=22_254)
    audio = load_audio(path)
    assert_canonical(audio, 1.0)
    assert peak_frequency(audio, SAMPLE_RATE) == pytest.approx(440, abs=2)


# --- resampling ------------------------------------------------------------------------


def test_resampled_sine_keeps_its_frequency() -> None:
    out = resample(sine(1.0, 48_000, freq=1000.0), 48_000, SAMPLE_RATE)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert len(out) == SAMPLE_RATE
    assert peak_frequency(out, SAMPLE_RATE) == pytest.approx(1000, abs=1.5)
    middle = out[2000:-2000]  # away from the edges, the amplitude is untouched
    assert np.abs(middle).max() == pytest.approx(0.5, rel=0.01)


def test_resample_round_trip_is_nearly_transparent() -> None:
    audio = sine(0.5, SAMPLE_RATE, freq=3000.0)
    back = resample(resample(audio, SAMPLE_RATE, 96_000), 96_000, SAMPLE_RATE)
    assert len(back) == len(audio)
    error = back[1000:-1000] - audio[1000:-1000]
    assert np.sqrt(np.mean(error**2)) < 1e-3


def test_resample_keeps_type_device_and_leading_axes() -> None:
    tensor = torch.from_numpy(sine(0.1, SAMPLE_RATE)).repeat(2, 1)
    out = resample(tensor, SAMPLE_RATE, 48_000)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4800) and out.device == tensor.device
    assert resample(np.zeros(441, np.float64), SAMPLE_RATE, 48_000).dtype == np.float64
    same = sine(0.1, SAMPLE_RATE)
    assert resample(same, SAMPLE_RATE, SAMPLE_RATE) is same
    assert resample(np.ones(3, np.int16), SAMPLE_RATE, SAMPLE_RATE).dtype == np.float32
    assert resample(np.zeros(0, np.float32), 48_000, SAMPLE_RATE).shape == (0,)
    with pytest.raises(ValueError):
        resample(same, 0, SAMPLE_RATE)


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 3000),
    orig=st.sampled_from([8_000, 22_050, 44_100, 48_000, 96_000, 192_000]),
    new=st.sampled_from([44_100, 48_000, 96_000]),
)
def test_resample_length_follows_the_ratio(length: int, orig: int, new: int) -> None:
    out = resample(np.ones(length, np.float32), orig, new)
    assert len(out) == math.ceil(length * new / orig)


# --- writing ---------------------------------------------------------------------------


def test_write_audio_round_trips_and_never_clips_silently(tmp_path: Path) -> None:
    audio = sine(0.5, 48_000)
    write_audio(tmp_path / "out.flac", audio, 48_000, subtype="PCM_24")
    back, sr = sf.read(str(tmp_path / "out.flac"), dtype="float32")
    assert sr == 48_000 and np.abs(back - audio).max() < 1e-6

    loud = audio * 3
    with pytest.raises(ValueError, match="would clip"):
        write_audio(tmp_path / "loud.wav", loud, 48_000)
    assert not (tmp_path / "loud.wav").exists()
    write_audio(tmp_path / "loud.wav", loud, 48_000, subtype="FLOAT")
    assert sf.read(str(tmp_path / "loud.wav"))[0].max() == pytest.approx(1.5, rel=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        write_audio(tmp_path / "nan.wav", np.full(10, np.nan), 48_000, subtype="FLOAT")


# --- scanning --------------------------------------------------------------------------


def test_scan_is_recursive_sorted_case_insensitive_and_skips_hidden(tmp_path: Path) -> None:
    for relative in [
        "b.WAV",
        "a.Flac",
        "sub/c.ogg",
        "sub/deeper/d.wav",
        ".hidden.wav",
        ".git/e.wav",
        "notes.txt",
    ]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in scan_audio_files(tmp_path)]
    assert found == ["a.Flac", "b.WAV", "sub/c.ogg", "sub/deeper/d.wav"]


def test_scan_survives_symlink_loops_and_lists_each_file_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"x")
    (tmp_path / "a" / "back").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a" / "self")  # an ELOOP link
    (tmp_path / "again.wav").symlink_to(tmp_path / "a" / "x.wav")
    (tmp_path / "broken.wav").symlink_to(tmp_path / "missing.wav")
    found = [p.relative_to(tmp_path).as_posix() for p in scan_audio_files(tmp_path)]
    assert found == ["a/x.wav", "broken.wav"]


def test_scan_follows_folder_links(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_sine(elsewhere / "far.wav")
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert scan_audio_files(root) == [root / "linked" / "far.wav"]


# --- the corpus ------------------------------------------------------------------------


def test_load_corpus_keeps_good_files_and_reports_bad_ones(tmp_corpus_with_bad: Path) -> None:
    warnings: list[FileVerdict] = []
    corpus = load_corpus(tmp_corpus_with_bad, on_skip=warnings.append)
    assert [f.path.name for f in corpus.files] == ["a.wav", "b.flac"]
    assert {v.path.name: v.reason for v in warnings} == {"notes.wav": "not audio", "quiet.wav": "silent"}
    assert corpus.skipped == warnings
    assert corpus.root == tmp_corpus_with_bad
    assert corpus.files[1].sample_rate == 48_000
    assert corpus.total_duration_s == pytest.approx(3.0, abs=1e-3)
    assert corpus.summary() == "2 files, 3.0 s of audio, 2 skipped"


@pytest.fixture
def tmp_corpus_with_bad(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    write_sine(root / "a.wav", seconds=1.0)
    write_sine(root / "b.flac", seconds=2.0, sr=48_000)
    _text(root / "notes.wav")
    _digital_silence(root / "quiet.wav")
    return root


def test_load_corpus_from_one_file_and_from_a_path_list(tmp_corpus_with_bad: Path) -> None:
    single = load_corpus(tmp_corpus_with_bad / "b.flac")
    assert single.root == tmp_corpus_with_bad
    assert [f.path.name for f in single.files] == ["b.flac"]
    chosen = load_corpus(tmp_corpus_with_bad, paths=[Path("a.wav"), tmp_corpus_with_bad / "quiet.wav"])
    assert [f.path.name for f in chosen.files] == ["a.wav"]
    assert [v.reason for v in chosen.skipped] == ["silent"]


def test_one_shots_are_kept_and_only_sub_20_ms_files_skipped(tmp_path: Path) -> None:
    for ms in (21, 30, 120, 400):
        write_sine(tmp_path / f"hit {ms:03d} ms.wav", seconds=ms / 1000)
    _short(tmp_path / "click.wav")  # 12 ms: less than a mel frame's worth
    corpus = load_corpus(tmp_path)
    assert [f.path.name for f in corpus.files] == [f"hit {ms:03d} ms.wav" for ms in (21, 30, 120, 400)]
    assert [(v.path.name, v.reason) for v in corpus.skipped] == [("click.wav", "too short (12 ms < 20 ms)")]


def test_short_sounds_are_packed_with_silences_between() -> None:
    gap = round(PACK_GAP_S * SAMPLE_RATE)
    lengths = [1000, 50_000, 3000, 4000, 2000, 100, 60_000, 500, 200]
    sounds = [torch.full((n,), float(i + 1)) for i, n in enumerate(lengths)]
    sequences, packs = pack_short_sounds(sounds, 9000)
    # long sounds stay whole; short ones are packed in corpus order until a pack is long enough;
    # the last, still too short, joins the pack before it
    assert packs == [[0, 2, 3], [1], [4, 5, 7, 8], [6]]
    first = sequences[0]
    assert first.shape[-1] == 1000 + gap + 3000 + gap + 4000 >= 9000
    assert first[1000 : 1000 + gap].abs().max() == 0 and set(first.unique().tolist()) == {0.0, 1.0, 3.0, 4.0}
    assert sequences[1] is sounds[1]
    assert sequences[2].shape[-1] == 2000 + 100 + 500 + 200 + 3 * gap
    assert sum(int((seq != 0).sum()) for seq in sequences) == sum(lengths)  # every sample trains
    assert pack_short_sounds(sounds[:1], 9000)[1] == [[0]]  # alone, a one-shot stays as it is


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no audio here")
    with pytest.raises(CorpusError, match=r"^no audio files found in "):
        load_corpus(tmp_path)


def test_all_bad_is_an_error(tmp_path: Path) -> None:
    _text(tmp_path / "one.wav")
    _short(tmp_path / "two.wav")
    warnings: list[FileVerdict] = []
    with pytest.raises(CorpusError) as caught:
        load_corpus(tmp_path, on_skip=warnings.append)
    assert str(caught.value) == f"no usable audio in {tmp_path}: 2 files skipped (see warnings above)"
    assert len(warnings) == 2


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="audio folder not found"):
        load_corpus(tmp_path / "nope")


def test_summary_and_durations() -> None:
    files = [CorpusFile(Path(f"{i}.wav"), np.zeros(1, np.float32), 32.0) for i in range(2)]
    assert Corpus(Path("/x"), files, []).summary() == "2 files, 1 min 04 s of audio"
    assert format_duration(4.24) == "4.2 s"
    assert format_duration(3 * 3600 + 5 * 60 + 2) == "3 h 05 min"


# --- the manifest ----------------------------------------------------------------------


def test_manifest_fingerprints_the_corpus(tiny_corpus: Path) -> None:
    manifest = build_manifest(load_corpus(tiny_corpus))
    assert manifest["root"] == str(tiny_corpus)
    entry = next(e for e in manifest["files"] if e["path"] == "bell.wav")
    assert entry["size"] == (tiny_corpus / "bell.wav").stat().st_size
    assert len(entry["sha256"]) == 64
    assert entry["sample_rate"] == SAMPLE_RATE
    assert entry["duration_s"] == pytest.approx(1.2)
    check = check_manifest(manifest)
    assert check.ok
    assert check.describe() == f"all 5 files present and unchanged under {tiny_corpus}"


def test_manifest_check_names_missing_and_changed_files(tiny_corpus: Path) -> None:
    manifest = build_manifest(load_corpus(tiny_corpus))
    (tiny_corpus / "bell.wav").unlink()
    (tiny_corpus / "tone.wav").unlink()
    noise = tiny_corpus / "noise.wav"
    data = bytearray(noise.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    noise.write_bytes(bytes(data))
    os.utime(tiny_corpus / "pluck_a.wav", (1, 1))  # touched but identical: not a change
    check = check_manifest(manifest)
    assert not check.ok
    assert check.missing == ["bell.wav", "tone.wav"]
    assert check.changed == ["noise.wav"]
    assert (
        check.describe()
        == f"2 files missing (bell.wav, tone.wav) and 1 changed (noise.wav) under {tiny_corpus}"
    )


def test_manifest_check_follows_a_moved_corpus(tiny_corpus: Path, tmp_path: Path) -> None:
    manifest = build_manifest(load_corpus(tiny_corpus))
    moved = tmp_path / "moved corpus"
    shutil.copytree(tiny_corpus, moved)  # new mtimes: hashes must settle it
    shutil.rmtree(tiny_corpus)
    lost = check_manifest(manifest)
    assert not lost.ok
    assert lost.describe() == f"corpus folder {tiny_corpus} not found (5 files expected)"
    assert check_manifest(manifest, audio_dir=moved).ok
    (moved / "pluck_b.wav").write_bytes(b"short")
    found = check_manifest(manifest, audio_dir=moved)
    assert found.describe() == f"1 file changed (pluck_b.wav) under {moved}"


@pytest.mark.parametrize(
    "manifest",
    [
        None,
        {"root": "/x"},
        {"root": "/x", "files": [{"path": "../etc/passwd", "size": 1, "mtime": 0.0, "sha256": "0"}]},
        {"root": "/x", "files": [{"path": "a.wav", "size": "big", "mtime": 0.0, "sha256": "0"}]},
    ],
)
def test_malformed_manifest_is_a_model_file_error(manifest: Any) -> None:
    with pytest.raises(ModelFileError, match="manifest is malformed"):
        check_manifest(manifest)
