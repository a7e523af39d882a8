"""`distillgan generate` and `distillgan vocode` through the real entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from rich.console import Console

from distillgan.audio import write_audio
from distillgan.cli.generate import DownloadBar
from distillgan.examples import synth_pluck
from distillgan.generation import take_path
from distillgan.mel import SAMPLE_RATE
from distillgan.vocoders import bigvgan_weights
from distillgan.vocoders.bigvgan_weights import FOLDER_FIELD, LOCAL_DIR_ENV, REPO_ID
from tests.cli.conftest import CliRun, assert_one_line_error
from tests.vocoders.model_files import nvidia_files, serve_hub, write_folder, write_model_file

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

GOOD = {"status": "complete", "epochs": 40, "val_mel_l1": 0.2}
STOPPED_EARLY = {"status": "partial", "epochs": 5, "total_epochs": 50, "val_mel_l1": 1.7}


@pytest.fixture(autouse=True)
def setting(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in an empty folder, with an offline, empty hub cache and no BigVGAN folder set."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(LOCAL_DIR_ENV, raising=False)
    bigvgan_weights._load_cached.cache_clear()
    bigvgan_weights._hub_checks.clear()


def add_model(models_dir: Path, name: str, vocoder: dict | None = None) -> Path:
    return write_model_file(models_dir / f"{name}.distillgan", vocoder=vocoder)


def test_generate_writes_a_new_file_and_prints_the_badge(cli: CliRun, models_dir: Path) -> None:
    add_model(models_dir, "rain", GOOD)
    result = cli(["generate", "rain", "--seed", "7", "--duration", "1.5"])
    assert result.exit_code == 0, result.stderr
    assert "Vocoder: Per-model HiFi-GAN V2 — the model's own vocoder: held-out mel error" in result.stdout
    assert "seed 7 · 1.50 s · 44100 Hz · 16-bit PCM · peak" in result.stdout
    assert "Saved to " in result.stdout and "rain_seed7_take01.wav" in result.stdout
    first = Path("rain_seed7_take01.wav")
    info = sf.info(str(first))
    assert (info.samplerate, info.frames, info.subtype) == (44100, round(1.5 * SAMPLE_RATE), "PCM_16")
    before = first.read_bytes()

    again = cli(["generate", "rain", "--seed", "7", "--duration", "0.5"])
    assert again.exit_code == 0 and "rain_seed7_take02.wav" in again.stdout
    assert first.read_bytes() == before  # never overwritten silently
    assert sf.info("rain_seed7_take02.wav").frames == round(0.5 * SAMPLE_RATE)


def test_without_a_seed_each_run_is_a_new_take_with_its_seed_shown(
    cli: CliRun, models_dir: Path, tmp_path: Path
) -> None:
    add_model(models_dir, "rain", GOOD)
    runs = [cli(["generate", "rain", "--duration", "0.5"]) for _ in range(2)]
    assert all(run.exit_code == 0 for run in runs), runs[0].stderr
    seeds = [int(re.search(r"^seed (\d+) · ", run.stdout, re.M).group(1)) for run in runs]
    assert seeds[0] != seeds[1]  # a fresh seed each time, not 0
    files = [Path(f"rain_seed{seed}_take01.wav") for seed in seeds]
    assert all(f"Saved to {file.resolve()}" in run.stdout for file, run in zip(files, runs, strict=True))
    assert files[0].read_bytes() != files[1].read_bytes()

    # the seed shown, given back, renders the same clip: a new take beside the first
    again = cli(["generate", "rain", "--duration", "0.5", "--seed", str(seeds[0]), "--json"])
    data = json.loads(again.stdout)
    retake = Path(data["path"])
    assert data["seed"] == seeds[0] and retake.name == f"rain_seed{seeds[0]}_take02.wav"
    assert sf.read(retake)[0].tolist() == sf.read(files[0])[0].tolist()
    # the name is the library's take name, the one the UI's takes get too
    (tmp_path / "elsewhere").mkdir()
    assert take_path(tmp_path / "elsewhere", "rain", seeds[0]).name == files[0].name


def test_json_is_one_object_and_matches_the_file(cli: CliRun, models_dir: Path, tmp_path: Path) -> None:
    add_model(models_dir, "rain", GOOD)
    out = tmp_path / "clip.flac"
    result = cli(
        [
            *("generate", "rain", "--seed", "3", "--duration", "1", "--sample-rate", "96000"),
            *("--bit-depth", "24", "-o", str(out), "--json"),
        ]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert data["path"] == str(out) and data["model"] == "rain"
    assert (data["vocoder"], data["seed"], data["sample_rate"], data["bit_depth"]) == (
        "hifigan",
        3,
        96000,
        "24",
    )
    assert data["warning"] is None and data["clipped_samples"] == 0 and data["duration_s"] == 1.0
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.frames) == ("FLAC", "PCM_24", 96000, 96000)


def test_low_epoch_warning(cli: CliRun, models_dir: Path) -> None:
    add_model(models_dir, "early", STOPPED_EARLY)
    result = cli(["generate", "early", "--vocoder", "hifigan", "--duration", "0.5", "--json"])
    assert result.exit_code == 0, result.stderr
    assert "warning: Trained for 5 epochs — quality may be limited" in result.stderr
    assert json.loads(result.stdout)["warning"] == "Trained for 5 epochs — quality may be limited"
    human = cli(["generate", "early", "--vocoder", "hifigan", "--duration", "0.5"])
    assert "Warning: Trained for 5 epochs — quality may be limited" in human.stdout


def test_bigvgan_from_a_folder_flag_or_variable(
    cli: CliRun, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(models_dir, "bare")
    folder = write_folder(tmp_path / "bigvgan", nvidia_files())
    result = cli(["generate", "bare", "--duration", "0.5", "--seed", "1", "--bigvgan-dir", str(folder)])
    assert result.exit_code == 0, result.stderr
    assert "Vocoder: BigVGAN-v2 universal — the model has no per-model vocoder yet" in result.stdout
    monkeypatch.setenv(LOCAL_DIR_ENV, str(folder))
    assert cli(["generate", "bare", "--duration", "0.5", "--seed", "2"]).exit_code == 0


def test_first_use_downloads_bigvgan_with_a_progress_bar(
    cli: CliRun, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(models_dir, "bare")
    files = nvidia_files()
    with serve_hub(files) as (endpoint, requested):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE")
        result = cli(["generate", "bare", "--duration", "0.5", "--seed", "1"])
    assert result.exit_code == 0, result.stderr
    assert set(requested) == {"config.json", "bigvgan_generator.pt"}
    assert "Downloading the universal BigVGAN-v2 vocoder (first use only)" in result.stderr
    assert "bigvgan_generator.pt" in result.stderr
    # Cached now: offline works, with no download announced.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bigvgan_weights._load_cached.cache_clear()
    again = cli(["generate", "bare", "--duration", "0.5", "--seed", "2"])
    assert again.exit_code == 0 and "Downloading" not in again.stderr


def test_download_bar_draws_only_when_called() -> None:
    console = Console(record=True, width=120, force_terminal=False)
    bar = DownloadBar(console)
    bar.close()
    assert console.export_text() == ""
    bar("bigvgan_generator.pt", 0, 1000)
    bar("bigvgan_generator.pt", 1000, 1000)
    bar.close()
    text = console.export_text()
    assert "first use only" in text and "bigvgan_generator.pt" in text


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["generate", "nothing"], ["no model named 'nothing'"]),
        (
            ["generate", "bare", "--vocoder", "hifigan"],
            ["no per-model HiFi-GAN vocoder", "'bigvgan'", "'auto'"],
        ),
        (["generate", "bare"], ["not cached", "--bigvgan-dir", REPO_ID]),
        (["generate", "good", "--vocoder", "bigvgan"], ["BigVGAN-v2 is unavailable", "HF_HUB_OFFLINE"]),
        (["generate", "good", "--duration", "0"], ["duration must be between 0.1 and 3600"]),
        (["generate", "good", "--seed", "-3"], ["seed must be a whole number"]),
        (["generate", "good", "--sample-rate", "22050"], ["'22050' is not one of"]),
        (["generate", "good", "--vocoder", "wavenet"], ["'wavenet' is not one of"]),
        (["generate", "good", "-o", "clip.mp3"], ["must end in .wav or .flac"]),
        (["generate", "good", "-o", "clip.flac", "--bit-depth", "32f"], ["FLAC holds 16- or 24-bit"]),
        (["generate", "good", "-o", "missing/clip.wav"], ["does not exist"]),
        (["generate", "good", "--loudness", "3"], ["loudness must be between -60 and 0 LUFS"]),
        (["vocode", "good", "missing.wav", "--loudness", "-80"], ["loudness must be between -60 and 0"]),
        (["vocode", "good", "missing.wav"], ["cannot read missing.wav"]),
        (["vocode", "good"], ["Missing argument 'INPUT'"]),
    ],
)
def test_every_mistake_is_one_clear_line(
    cli: CliRun, models_dir: Path, args: list[str], fragments: list[str]
) -> None:
    add_model(models_dir, "bare")
    add_model(models_dir, "good", GOOD)
    result = cli(args)
    assert_one_line_error(result, *fragments)
    assert FOLDER_FIELD not in result.stderr  # the UI's words stay in the UI


def test_existing_output_needs_overwrite(cli: CliRun, models_dir: Path) -> None:
    add_model(models_dir, "good", GOOD)
    Path("mine.wav").write_bytes(b"precious")
    assert_one_line_error(cli(["generate", "good", "-o", "mine.wav"]), "already exists", "--overwrite")
    assert Path("mine.wav").read_bytes() == b"precious"
    result = cli(["generate", "good", "-o", "mine.wav", "--overwrite", "--duration", "0.5"])
    assert result.exit_code == 0 and sf.info("mine.wav").frames == round(0.5 * SAMPLE_RATE)


def test_vocode_a_file(cli: CliRun, models_dir: Path, tmp_path: Path) -> None:
    add_model(models_dir, "good", GOOD)
    source = tmp_path / "pluck.wav"
    write_audio(source, synth_pluck(1.2, seed=2, freq=196.0), SAMPLE_RATE)
    result = cli(["vocode", "good", str(source), "--bit-depth", "32f", "--sample-rate", "48000"])
    assert result.exit_code == 0, result.stderr
    assert "Vocoder: Per-model HiFi-GAN V2" in result.stdout and "seed" not in result.stdout
    info = sf.info("pluck-vocoded-hifigan.wav")
    assert (info.subtype, info.samplerate, info.frames) == ("FLOAT", 48000, round(1.2 * 48000))
    as_json = cli(["vocode", "good", str(source), "--json", "-o", str(tmp_path / "v.wav")])
    data = json.loads(as_json.stdout)
    assert data["seed"] is None and data["path"] == str(tmp_path / "v.wav")


def test_loudness_normalisation_on_export(cli: CliRun, models_dir: Path, tmp_path: Path) -> None:
    import pyloudnorm

    add_model(models_dir, "good", GOOD)
    source = tmp_path / "pluck.wav"
    write_audio(source, synth_pluck(1.2, seed=2, freq=196.0), SAMPLE_RATE)
    for args in (["generate", "good", "--duration", "1.5"], ["vocode", "good", str(source)]):
        # a pluck rendered faithfully peaks too high for -20 LUFS under full scale; -30 fits
        result = cli([*args, "--loudness", "-30", "--json", "-o", str(tmp_path / "out.wav"), "--overwrite"])
        assert result.exit_code == 0, result.stderr
        badge = json.loads(result.stdout)
        written, rate = sf.read(badge["path"], dtype="float64")
        assert badge["loudness_lufs"] == pytest.approx(
            pyloudnorm.Meter(rate).integrated_loudness(written), abs=0.01
        )
        assert badge["loudness_lufs"] == pytest.approx(-30.0, abs=0.05) and badge["loudness_gain_db"] != 0


def test_help_stays_light() -> None:
    code = (
        "import sys\nfrom distillgan.cli.main import main\n"
        "for args in (['generate', '--help'], ['vocode', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "TORCH False" in out
    assert "--bigvgan-dir" in out and "--bit-depth [16|24|32f]" in out and "--sample-rate" in out
