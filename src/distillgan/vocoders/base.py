"""The vocoder interface: the project's log-mel (128 bins, hop 512) in, 44.1 kHz mono audio out.

Both implementations (the per-model HiFi-GAN and the universal BigVGAN-v2) are fully
convolutional, so a long mel is vocoded in chunks: each chunk is run with ``context_frames``
real neighbouring frames on both sides, and only its centre is kept (overlap-discard). The
context covers the network's whole receptive field, so every kept sample sees exactly the
input a single pass would have given it: chunked output equals single-pass output up to float
rounding, whatever the duration, and there is no seam to hear. Memory is bounded by the chunk
size, not by the duration.

Every chunk's output is then level-matched to its mel (:mod:`distillgan.vocoders.mel_match`),
whichever network rendered it; the context covers that step's reach too.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from distillgan.mel import HOP_LENGTH, N_MELS
from distillgan.vocoders.mel_match import REACH_FRAMES, match_to_mel

VocoderKind = Literal["hifigan", "bigvgan"]

# On the CPU a mel is split among worker threads (one core each) only when every worker gets at
# least this many times the context it must recompute, so the split costs little.
MIN_CHUNK_PER_CONTEXT = 4

# A network's sample within 0.1 dB of full scale is clipped: HiFi-GAN ends in tanh, which squashes
# an overshoot just below 1.0 rather than past it, so |x| >= 1 alone would miss its clipping.
FULL_SCALE_THRESHOLD = 10 ** (-0.1 / 20)


@dataclass(frozen=True)
class Rendering:
    """A vocoded mel: the audio, and which of its samples the network itself delivered at full
    scale (before level matching, which may raise or lower them: that is a gain, not clipping)."""

    audio: np.ndarray  # float32, T * 512 samples
    clipped: np.ndarray  # bool, one per sample


def _use_threads(threads: int) -> None:
    """Settings of a vocoding thread; with torch's OpenMP runtime both are per thread.

    Denormal floats are flushed to zero: quiet passages and small activations push
    convolutions into denormal range, where x86 computes up to 100x slower, and flushing
    changes results by less than 1e-38. The flag lives in each thread's floating-point
    control register and OpenMP helper threads inherit it from the thread that starts them,
    which is why vocoding runs in its own threads rather than in the caller's (whose settings
    it would otherwise have to change and restore).
    """
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


@functools.cache
def _worker_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    """Vocoding threads, kept for the life of the process: a new thread would start each call
    from a cold malloc arena, page-faulting its memory in again (see :func:`_retain_freed_memory`).

    Keyed by process id: a forked child inherits the pool object but not its threads.
    """
    return ThreadPoolExecutor(workers, thread_name_prefix="distillgan-vocode")


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _retain_freed_memory() -> None:
    """Let glibc's malloc keep large freed blocks for reuse instead of returning them to the kernel.

    Vocoding allocates and frees the same few multi-megabyte activations dozens of times per
    chunk. glibc's defaults hand such blocks back (munmap, heap trimming), so every new tensor
    page-faults its memory in again, zero-filled: measured on 2 cores, 48 k faults (190 MB) per
    5 s chunk, about a fifth of the vocoding time, with both workers queueing on the kernel's
    page-fault lock. With these thresholds (32 MiB is glibc's largest mmap threshold) the blocks
    stay in the process: it keeps its peak vocoding memory (~150 MB per worker for the per-model
    vocoder) after a call instead of shrinking back, and the next call reuses it. Other C
    libraries manage memory their own way and are left alone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)


def conv_half_width(kernel_size: int, dilation: int = 1) -> float:
    """How far (in samples, one side) a centred ``Conv1d`` output reaches into its input."""
    return dilation * (kernel_size - 1) / 2


def transposed_conv_half_width(kernel_size: int, stride: int) -> float:
    """How far (in input samples, one side) a ``ConvTranspose1d`` output reaches into its input."""
    return math.ceil(kernel_size / stride / 2) + 1


def context_frames_for(half_widths: Sequence[tuple[float, int]]) -> int:
    """Frames of context a chunk needs, from ``(half width in samples, samples per frame)`` pairs.

    Each layer adds its one-sided reach, measured at the rate it runs at; the sum over the
    chain, converted to mel frames, bounds the receptive field. One frame of margin is added.
    """
    frames = sum(width / samples_per_frame for width, samples_per_frame in half_widths)
    return math.ceil(frames) + 1


class Vocoder(ABC):
    """Mel ``(128, T)`` in the design's format -> ``(T * 512,)`` float32 audio at 44.1 kHz."""

    kind: ClassVar[VocoderKind]
    name: ClassVar[str]
    # Frames per chunk when vocoding long mels (each implementation picks what fits in memory).
    default_chunk_frames: ClassVar[int]

    def __init__(self, network: torch.nn.Module, *, context_frames: int, device: torch.device) -> None:
        self.network = network
        # the network's receptive field, then level matching's (a kept sample's correction
        # reads audio that must itself be exact)
        self.context_frames = context_frames + REACH_FRAMES
        self.device = device

    @abstractmethod
    def _forward(self, mel: torch.Tensor, phase: torch.Tensor | None) -> torch.Tensor:
        """``(1, 128, T)`` float32 on ``self.device`` -> ``(1, 1, T * 512)``.

        ``phase``: for a network driven by oscillators, their phases at the chunk's first frame
        (``(1, 128)``, a column of :meth:`_start_phases`); ``None`` for the others.
        """

    def _start_phases(self, mel: torch.Tensor) -> torch.Tensor | None:
        """The oscillators' phases at every frame of a whole mel, ``(128, T)``, so each chunk
        continues where the one before it left off; ``None`` for networks without oscillators."""
        return None

    def vocode(
        self, mel: torch.Tensor, *, chunk_frames: int | None = None, level_matched: bool = True
    ) -> np.ndarray:
        """Audio for a log-mel ``(128, T)``, as a float32 NumPy array of exactly ``T * 512`` samples.

        Every render is level-matched to its mel (:mod:`distillgan.vocoders.mel_match`);
        ``level_matched=False`` gives the network's output alone, for measuring what matching does.
        """
        return self.render(mel, chunk_frames=chunk_frames, level_matched=level_matched).audio

    def render(
        self, mel: torch.Tensor, *, chunk_frames: int | None = None, level_matched: bool = True
    ) -> Rendering:
        """:meth:`vocode`, with the samples the network clipped.

        Long mels go in chunks of at most ``chunk_frames`` frames. On the CPU, a mel long enough
        is split among ``torch.get_num_threads()`` worker threads, one core each: with these
        narrow convolutions that scales better than splitting every operation across cores,
        and with no synchronisation per operation, a core busy with another process delays
        only its own chunk.
        """
        if mel.dim() == 3 and mel.shape[0] == 1:
            mel = mel[0]
        if mel.dim() != 2 or mel.shape[0] != N_MELS:
            raise ValueError(f"expected a ({N_MELS}, frames) mel, got shape {tuple(mel.shape)}")
        if chunk_frames is not None and chunk_frames < 1:
            raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
        frames = mel.shape[-1]
        if frames == 0:
            return Rendering(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool))
        workers = 1
        if self.device.type == "cpu":
            workers = max(
                1, min(torch.get_num_threads(), frames // (MIN_CHUNK_PER_CONTEXT * self.context_frames))
            )
        if chunk_frames is None:
            # Equal chunks, as many as the workers or a multiple of it, so no core idles at the end.
            count = math.ceil(math.ceil(frames / self.default_chunk_frames) / workers) * workers
            chunk_frames = max(1, math.ceil(frames / count))
        chunk = chunk_frames
        spans = [(start, min(start + chunk, frames)) for start in range(0, frames, chunk)]
        out = torch.empty(frames * HOP_LENGTH, dtype=torch.float32)
        clipped = torch.empty(frames * HOP_LENGTH, dtype=torch.bool)
        mel = mel.to(self.device, torch.float32)
        # one span starts at frame 0, where the oscillators start anyway
        phases = self._start_phases(mel) if len(spans) > 1 else None

        def run(span: tuple[int, int]) -> None:
            start, stop = span
            begin, end = max(0, start - self.context_frames), min(frames, stop + self.context_frames)
            # Autocast off: the networks run in float32 (snake and tanh lose precision in half floats).
            with torch.inference_mode(), torch.autocast(device_type=self.device.type, enabled=False):
                phase = None if phases is None else phases[None, :, begin]
                audio = self._forward(mel[None, :, begin:end], phase)[0, 0]
                kept = slice((start - begin) * HOP_LENGTH, (stop - begin) * HOP_LENGTH)
                clipped[start * HOP_LENGTH : stop * HOP_LENGTH] = (
                    audio[kept].abs() > FULL_SCALE_THRESHOLD
                ).cpu()
                if level_matched:
                    audio = match_to_mel(audio, mel[:, begin:end])
                out[start * HOP_LENGTH : stop * HOP_LENGTH] = audio[kept].float().cpu()

        if self.device.type == "cpu":
            _retain_freed_memory()
            threads = torch.get_num_threads()
            workers = min(workers, len(spans))
            # One core per worker when the mel is split; else one worker using all of them.
            threads_each = 1 if workers > 1 else threads

            def run_in_worker(span: tuple[int, int]) -> None:
                _use_threads(threads_each)
                run(span)

            pool = _worker_pool(workers, os.getpid())
            try:
                list(pool.map(run_in_worker, spans))  # list() re-raises a worker's exception here
            finally:
                # A worker's set_num_threads also sets the count every thread started later
                # takes: left at 1, a training job the UI starts next would use one core.
                torch.set_num_threads(threads)
        else:
            for span in spans:
                run(span)
        return Rendering(out.numpy(), clipped.numpy())
