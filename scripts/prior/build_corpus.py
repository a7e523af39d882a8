"""Render the universal vocoder prior's training corpus from packaged instruments and voices.

Everything is synthesised on this machine, from fixed seeds, with no recorded music and no
download beyond Debian packages:

* General MIDI soundfonts through fluidsynth: every melodic program across its whole pitch
  range and all velocities (single notes, runs and chords), and the drum kits;
* speech from espeak-ng in many languages and voice variants, pitches and speeds;
* distillgan's own example synthesizers (plucks, bells, noise textures, drones) with random
  parameters;
* signal textures: coloured and band noise, sweeps, pulses, clicks, harmonic stacks.

Each file is written at a random level (peaks from -30 to -1 dBFS). Files already present are
kept, so an interrupted build continues where it stopped; ``--seed`` and ``--minutes`` make
the same corpus every time.

    python scripts/prior/build_corpus.py OUT_DIR [--minutes 90] [--seed 0]

Sources and licences are listed in ``src/distillgan/vocoders/prior/CARD.md``.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from distillgan import examples
from distillgan.audio import resample
from distillgan.mel import SAMPLE_RATE

SOUNDFONTS = {
    "fluidr3": Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # fluid-soundfont-gm, MIT
    "timgm6mb": Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),  # timgm6mb-soundfont, GPL-2
}
# GM drum kits (programs on channel 10): standard, room, power, electronic, TR-808, jazz, brush, orchestra
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40, 48)
ESPEAK_LANGUAGES = (
    "en",
    "en-us",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "sv",
    "pl",
    "ru",
    "fi",
    "hu",
    "cs",
    "el",
)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "whisper")
SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the rain keeps falling.",
    "Seven silver bells rang across the valley as evening came slowly down.",
    "Please bring the heavy boxes upstairs before the storm reaches the harbour.",
    "A distant engine hummed, then faded into the wind between the hills.",
    "Numbers: one, two, three, four, five, six, seven, eight, nine and ten.",
    "She sang a long low note and held it until the echo answered back.",
    "Whispering voices, sharp consonants, and rolling vowels all belong here.",
    "Can you hear the difference between a sigh, a shout and a quiet question?",
)

# Share of the corpus per source (the rest of --minutes is split the same way).
SHARES = {"instruments": 0.5, "drums": 0.12, "speech": 0.18, "examples": 0.1, "textures": 0.1}
CLIP_SECONDS = 20.0


# ---------------------------------------------------------------------------------------------
# MIDI: a minimal standard MIDI file writer (format 0, one track)


def _var_len(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(events: list[tuple[float, bytes]], ticks_per_second: int = 1000) -> bytes:
    """(time in seconds, raw MIDI message) -> SMF bytes at 500 000 µs per 500-tick beat."""
    track = bytearray(b"\x00\xff\x51\x03\x07\xa1\x20")  # tempo 500 000 µs per beat
    now = 0
    for seconds, message in sorted(events, key=lambda e: e[0]):
        tick = round(seconds * ticks_per_second)
        track += _var_len(tick - now) + message
        now = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_second // 2)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def instrument_phrase(rng: np.random.Generator, program: int, seconds: float) -> list[tuple[float, bytes]]:
    """Notes over the whole MIDI range one program plays: single notes, runs and chords, every velocity."""
    low, high = (21, 108) if program < 96 else (36, 96)
    events: list[tuple[float, bytes]] = [(0.0, bytes([0xC0, program]))]
    t = 0.05
    while t < seconds - 1.0:
        style = rng.choice(["note", "run", "chord"], p=[0.45, 0.3, 0.25])
        velocity = int(rng.integers(15, 128))
        if style == "run":
            pitches = np.clip(int(rng.integers(low, high)) + np.cumsum(rng.integers(-4, 5, 6)), low, high)
            step = float(rng.uniform(0.07, 0.25))
            for k, pitch in enumerate(pitches):
                start = t + k * step
                events += [
                    (start, bytes([0x90, int(pitch), velocity])),
                    (start + step, bytes([0x80, int(pitch), 0])),
                ]
            t += step * len(pitches) + float(rng.uniform(0.0, 0.4))
            continue
        root = int(rng.integers(low, high))
        pitches = (
            [root] if style == "note" else [p for p in (root, root + 4, root + 7, root + 12) if p <= high]
        )
        length = float(rng.choice([0.15, 0.4, 1.0, 2.5]) * rng.uniform(0.7, 1.3))
        for pitch in pitches:
            events += [(t, bytes([0x90, pitch, velocity])), (t + length, bytes([0x80, pitch, 0]))]
        t += length + float(rng.uniform(0.05, 0.8))
    return events


def drum_pattern(rng: np.random.Generator, kit: int, seconds: float) -> list[tuple[float, bytes]]:
    """Random grooves and fills over GM percussion keys 35-81 on channel 10."""
    events: list[tuple[float, bytes]] = [(0.0, bytes([0xC9, kit]))]
    t = 0.05
    beat = float(rng.uniform(0.1, 0.3))
    while t < seconds - 0.5:
        keys = rng.integers(35, 82, int(rng.integers(1, 3)))
        for key in keys:
            velocity = int(rng.integers(10, 128))
            events += [(t, bytes([0x99, int(key), velocity])), (t + 0.1, bytes([0x89, int(key), 0]))]
        t += beat * float(rng.choice([0.5, 1.0, 1.0, 2.0, 4.0]))
    return events


def render_midi(events: list[tuple[float, bytes]], soundfont: Path, seconds: float, work: Path) -> np.ndarray:
    midi, wav = work / "take.mid", work / "take.wav"
    midi.write_bytes(midi_file(events))
    subprocess.run(
        [
            "fluidsynth",
            "-ni",
            "-q",
            "-g",
            "0.6",
            "-r",
            str(SAMPLE_RATE),
            "-F",
            str(wav),
            str(soundfont),
            str(midi),
        ],
        check=True,
        capture_output=True,
    )
    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return resample(mono, sr, SAMPLE_RATE)[: round(seconds * SAMPLE_RATE)]


# ---------------------------------------------------------------------------------------------
# speech


def render_speech(rng: np.random.Generator, seconds: float, work: Path) -> np.ndarray:
    pieces, total = [], 0
    while total < seconds * SAMPLE_RATE:
        wav = work / "speech.wav"
        voice = f"{rng.choice(ESPEAK_LANGUAGES)}+{rng.choice(ESPEAK_VARIANTS)}"
        text = " ".join(rng.choice(SENTENCES, 2, replace=False))
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                voice,
                "-p",
                str(rng.integers(10, 90)),
                "-s",
                str(rng.integers(110, 230)),
                "-w",
                str(wav),
                text,
            ],
            check=True,
            capture_output=True,
        )
        audio, sr = sf.read(wav, dtype="float32")
        piece = resample(audio, sr, SAMPLE_RATE)
        pieces += [piece, np.zeros(round(float(rng.uniform(0.05, 0.5)) * SAMPLE_RATE), np.float32)]
        total += sum(len(p) for p in pieces[-2:])
    return np.concatenate(pieces)[: round(seconds * SAMPLE_RATE)]


# ---------------------------------------------------------------------------------------------
# distillgan's example synthesizers, with random parameters


def render_example(rng: np.random.Generator, seconds: float) -> np.ndarray:
    seed = int(rng.integers(1 << 31))
    kind = rng.choice(["pluck", "bell", "noise", "tone"])
    if kind == "pluck":
        return examples.synth_pluck(
            seconds,
            seed=seed,
            freq=float(rng.uniform(40, 1500)),
            t60_s=float(rng.uniform(0.3, 6)),
            brightness=float(rng.uniform(0.2, 1.0)),
        )
    if kind == "bell":
        return examples.synth_bell(
            seconds, seed=seed, freq=float(rng.uniform(80, 2500)), t60_s=float(rng.uniform(0.5, 5))
        )
    if kind == "noise":
        return examples.synth_noise_texture(
            seconds, seed=seed, kind=str(rng.choice(["rain", "wind", "surf"]))
        )
    return examples.synth_tone(
        seconds, seed=seed, freq=float(rng.uniform(30, 800)), vibrato_depth=float(rng.uniform(0.0, 0.01))
    )


# ---------------------------------------------------------------------------------------------
# signal textures


def render_texture(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    kind = rng.choice(["coloured", "band", "sweep", "pulses", "stack"])
    if kind == "coloured":
        # noise with a spectral slope between brown (-6 dB/oct) and blue (+3 dB/oct)
        slope = float(rng.uniform(-6, 3))
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
        x = np.fft.irfft(spectrum * (freqs / 1000) ** (slope / 6.02), n)
    elif kind == "band":
        centre = float(np.exp(rng.uniform(np.log(40), np.log(16000))))
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        width = float(rng.uniform(0.1, 2.0))
        x = np.fft.irfft(spectrum * np.exp(-0.5 * (np.log2(np.maximum(freqs, 1) / centre) / width) ** 2), n)
    elif kind == "sweep":
        f0, f1 = np.exp(rng.uniform(np.log(20), np.log(20000), 2))
        freq = f0 * (f1 / f0) ** (t / seconds)
        x = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    elif kind == "pulses":
        x = np.zeros(n)
        rate = float(rng.uniform(0.5, 40))
        x[(np.arange(0, seconds, 1 / rate) * SAMPLE_RATE).astype(int)] = 1.0
        decay = np.exp(
            -np.arange(round(0.05 * SAMPLE_RATE)) / (float(rng.uniform(0.0002, 0.01)) * SAMPLE_RATE)
        )
        x = np.convolve(x, decay * rng.standard_normal(len(decay)))[:n]
    else:
        f0 = float(np.exp(rng.uniform(np.log(30), np.log(3000))))
        harmonics = np.arange(1, max(2, int(20000 / f0)))[:60]
        amplitudes = harmonics ** -float(rng.uniform(0.5, 2.0))
        x = (
            amplitudes[:, None]
            * np.sin(2 * np.pi * f0 * harmonics[:, None] * t + rng.uniform(0, 6.3, (len(harmonics), 1)))
        ).sum(0)
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * float(rng.uniform(0.05, 3)) * t) ** 2
    return x.astype(np.float32)


# ---------------------------------------------------------------------------------------------


def _at_random_level(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    peak = np.abs(x).max()
    if peak == 0:
        return x.astype(np.float32)
    return (x * 10 ** (float(rng.uniform(-30, -1)) / 20) / peak).astype(np.float32)


def build(out: Path, minutes: float, seed: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    missing = [name for name, path in SOUNDFONTS.items() if not path.exists()]
    for tool in ("fluidsynth", "espeak-ng"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if missing:
        raise SystemExit(
            f"missing: {', '.join(missing)} (apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont espeak-ng)"
        )
    jobs: list[tuple[str, Callable[[np.random.Generator, Path], np.ndarray]]] = []
    clips = {source: max(1, round(minutes * 60 * share / CLIP_SECONDS)) for source, share in SHARES.items()}
    fonts = list(SOUNDFONTS.items())
    for k in range(clips["instruments"]):
        program = k % 128
        font_name, font = fonts[(k // 128) % len(fonts)]
        jobs.append(
            (
                f"gm_{font_name}_p{program:03d}_{k:04d}",
                lambda r, w, p=program, f=font: render_midi(
                    instrument_phrase(r, p, CLIP_SECONDS), f, CLIP_SECONDS, w
                ),
            )
        )
    for k in range(clips["drums"]):
        kit = DRUM_KITS[k % len(DRUM_KITS)]
        font_name, font = fonts[(k // len(DRUM_KITS)) % len(fonts)]
        jobs.append(
            (
                f"drums_{font_name}_kit{kit:02d}_{k:04d}",
                lambda r, w, kit=kit, f=font: render_midi(
                    drum_pattern(r, kit, CLIP_SECONDS), f, CLIP_SECONDS, w
                ),
            )
        )
    for k in range(clips["speech"]):
        jobs.append((f"speech_{k:04d}", lambda r, w: render_speech(r, CLIP_SECONDS, w)))
    for k in range(clips["examples"]):
        jobs.append((f"example_{k:04d}", lambda r, w: render_example(r, CLIP_SECONDS)))
    for k in range(clips["textures"]):
        jobs.append((f"texture_{k:04d}", lambda r, w: render_texture(r, CLIP_SECONDS)))

    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (stem, render) in enumerate(jobs):
            path = out / f"{stem}.flac"
            paths.append(path)
            if path.exists():
                continue
            rng = np.random.default_rng([seed, index])
            audio = _at_random_level(render(rng, Path(tmp)), rng)
            partial = path.with_suffix(".tmp.flac")
            sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_24")
            partial.replace(path)
            print(f"[{index + 1}/{len(jobs)}] {path.name}", flush=True)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = build(args.out, args.minutes, args.seed)
    print(f"{len(paths)} files in {args.out}")


if __name__ == "__main__":
    main()
