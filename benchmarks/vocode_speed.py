"""Vocoding speed on this machine, as ONE JSON line on stdout (progress goes to stderr).

    python benchmarks/vocode_speed.py [--repeats 5] [--bigvgan-seconds 2] [--model PATH]

Keys:
  hifigan_rtf            per-model HiFi-GAN, default V2 recipe (random weights), 10 s of audio:
                         seconds of audio per wall-clock second (best of --repeats runs)
  hifigan_rtf_median     the same, median run
  hifigan_audio_s_per_cpu_s  audio seconds per CPU-second of the process (summed over threads):
                         robust to other processes competing for the cores
  hifigan_kernel         "native" when the compiled resblock kernel ran (vocoders/native.py),
                         else "torch (why not)"
  hifigan_rtf_torch      the same vocoder on torch's convolutions only (no compiled kernel),
                         measured in this run, interleaved with the runs above
  native_speedup         hifigan_rtf_median / the torch-only median
  bigvgan_rtf            BigVGAN-v2 full size (44khz_128band_512x config, random weights),
                         --bigvgan-seconds of audio, best of 2 runs
  generate_s             `generation.generate(..., duration_s=10)` in a running process, first call
                         (reads the model file and builds the networks)
  generate_warm_s        the same call again (networks cached in the process)
  generate_cli_s         `distillgan generate MODEL --duration 10` as a new process: Python start-up,
                         imports, loading, generation and writing the WAV
Context: threads (torch intra-op threads), cpus, load_avg_1min before the run.

Without --model, a model file with the default VAE and default V2 HiFi-GAN (random weights,
status complete) is written to a temporary folder: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def random_mel(frames: int):  # -> torch.Tensor
    import torch

    generator = torch.Generator().manual_seed(0)
    return -5.0 + 1.5 * torch.randn(128, frames, generator=generator)


def time_vocoder(vocoder, seconds: float, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of each run of ``vocoder.vocode`` on ``seconds`` of mel."""
    from distillgan.mel import HOP_LENGTH, SAMPLE_RATE

    mel = random_mel(round(seconds * SAMPLE_RATE / HOP_LENGTH))
    vocoder.vocode(mel[:, :64])  # warm-up: oneDNN builds its kernels on first use
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        vocoder.vocode(mel)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def write_default_model(path: Path) -> Path:
    """Default-size VAE and V2 HiFi-GAN with random weights, written by the training side's writers."""
    from distillgan.lightning_modules.hifigan import HiFiGANModule
    from distillgan.lightning_modules.vae import VAEModule
    from distillgan.modelfile import ModelLock, StageRecord, write_model
    from distillgan.recipes import VAEConfig, load_vocoder_config

    progress = StageRecord(status="complete", epoch=1, epochs_completed=1, total_epochs=1, steps=1)
    sections = {
        **VAEModule(VAEConfig()).model_file_sections(progress),
        **HiFiGANModule(load_vocoder_config()).model_file_sections(progress),
    }
    with ModelLock(path, owner="benchmark") as lock:
        write_model(path, sections, lock=lock, create=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="HiFi-GAN runs (best and median reported)")
    parser.add_argument("--bigvgan-seconds", type=float, default=2.0, help="audio seconds for BigVGAN")
    parser.add_argument(
        "--model", type=Path, default=None, help="a .distillgan file for the generate timings"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    import torch

    from distillgan.generation import generate
    from distillgan.networks.bigvgan import BigVGAN, BigVGANConfig
    from distillgan.recipes import load_vocoder_config
    from distillgan.vocoders import native
    from distillgan.vocoders.bigvgan import BigVGANVocoder
    from distillgan.vocoders.hifigan import HiFiGANVocoder, build_generator

    results: dict[str, object] = {}
    cpu = torch.device("cpu")

    log("HiFi-GAN V2 (default recipe), 10 s of audio, with and without the compiled kernel…")
    torch.manual_seed(0)
    generator = build_generator(load_vocoder_config().generator)  # configs/vocoder.yaml
    hifigan = HiFiGANVocoder(generator, cpu)
    torch_only = HiFiGANVocoder(generator, cpu, native=False)
    walls, cpus, torch_walls = [], [], []
    for _ in range(args.repeats):  # interleaved: a busy spell on the machine hits both alike
        wall, cpu_s = time_vocoder(hifigan, 10.0, 1)
        walls += wall
        cpus += cpu_s
        torch_walls += time_vocoder(torch_only, 10.0, 1)[0]
    results["hifigan_rtf"] = round(10.0 / min(walls), 2)
    results["hifigan_rtf_median"] = round(10.0 / statistics.median(walls), 2)
    results["hifigan_audio_s_per_cpu_s"] = round(10.0 / min(cpus), 2)
    results["hifigan_kernel"] = native.status()
    results["hifigan_rtf_torch"] = round(10.0 / min(torch_walls), 2)
    results["native_speedup"] = round(statistics.median(torch_walls) / statistics.median(walls), 2)

    log(f"BigVGAN-v2 full size (random weights), {args.bigvgan_seconds:g} s of audio…")
    network = BigVGAN(BigVGANConfig()).eval().requires_grad_(False)
    walls, _ = time_vocoder(BigVGANVocoder(network, cpu), args.bigvgan_seconds, 2)
    results["bigvgan_rtf"] = round(args.bigvgan_seconds / min(walls), 3)
    del network

    with tempfile.TemporaryDirectory() as folder:
        model = args.model or write_default_model(Path(folder) / "bench.distillgan")
        log("generate, 10 s, in this process (first call, then cached)…")
        start = time.perf_counter()
        generate(model, seed=1, duration_s=10.0, vocoder="hifigan")
        results["generate_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        generate(model, seed=2, duration_s=10.0, vocoder="hifigan")
        results["generate_warm_s"] = round(time.perf_counter() - start, 2)

        log("distillgan generate --duration 10, a new process…")
        out = Path(folder) / "clip.wav"
        command = ["distillgan", "generate", str(model), "--duration", "10", "--seed", "3"]
        command += ["--vocoder", "hifigan", "-o", str(out), "--overwrite"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        results["generate_cli_s"] = round(time.perf_counter() - start, 2)

    results.update(threads=torch.get_num_threads(), cpus=os.cpu_count(), load_avg_1min=round(load_before, 2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
