"""Batches of random crops from an in-memory corpus, resumable mid-epoch.

Both stages train on random crops of whole-corpus tensors (mel frames for the VAE, audio
samples for the vocoder). The crops of batch ``k`` depend only on ``(seed, rank, k)``, and
the loader reports how far it got through Lightning's ``state_dict`` protocol, so a run
cancelled mid-epoch resumes with exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch


def hold_out(
    sequences: Sequence[torch.Tensor], clip_len: int, count: int, min_remaining: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Cut ``count`` clips of ``clip_len`` (last axis) off the ends of corpus files.

    Returns the training sequences (with the clips removed) and the held-out clips. Clips
    come first from files spread evenly over the corpus order (one each: the held-out set
    covers the corpus's variety, not just its first files), then from whichever file is
    longest. A file only gives up a clip while at least ``min_remaining`` remains for
    training, so a tiny corpus keeps something to train on; if no file is long enough, one
    clip is taken from the longest file *without* removing it (held-out then overlaps
    training: honest but optimistic figures on a corpus that small).
    """
    train = list(sequences)
    clips: list[torch.Tensor] = []

    def cut(i: int) -> None:
        clips.append(train[i][..., -clip_len:].clone())
        train[i] = train[i][..., :-clip_len]

    eligible = [i for i, seq in enumerate(train) if seq.shape[-1] - clip_len >= min_remaining]
    spread = min(count, len(eligible))
    for k in range(spread):
        cut(eligible[k * len(eligible) // spread])
    while len(clips) < count:
        longest = max(range(len(train)), key=lambda i: train[i].shape[-1])
        if train[longest].shape[-1] - clip_len < min_remaining:
            break
        cut(longest)
    if not clips:
        longest = max(range(len(train)), key=lambda i: train[i].shape[-1])
        clips.append(fit_length(train[longest], clip_len))
    return train, clips


# A corpus of at least this many files holds whole files out for validation (unseen audio);
# a smaller one cuts its held-out clips from the ends of training files.
HOLD_OUT_FILES_FROM = 8


def hold_out_files(
    sequences: Sequence[torch.Tensor], clip_len: int, count: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int]]:
    """Hold out whole files: about one in ten (at least one, at most ``count``), spread over
    the corpus order, and cut up to ``count`` clips of ``clip_len`` from them (a file shorter
    than a clip is padded with silence).

    Returns the training sequences (the other files, whole), the clips and the indices of
    the held-out files.
    """
    n = len(sequences)
    k = min(count, n - 1, max(1, round(n / 10)))
    held = sorted({int((i + 0.5) * n / k) for i in range(k)})
    per_file = math.ceil(count / len(held))
    clips: list[torch.Tensor] = []
    for i in held:
        seq = sequences[i]
        pieces = max(1, min(per_file, seq.shape[-1] // clip_len))
        clips += [fit_length(seq[..., : seq.shape[-1] - j * clip_len], clip_len) for j in range(pieces)]
    train = [seq for i, seq in enumerate(sequences) if i not in held]
    return train, clips[:count], held


def fit_length(seq: torch.Tensor, length: int, fill: float = 0.0) -> torch.Tensor:
    if seq.shape[-1] >= length:
        return seq[..., -length:].clone()
    pad = torch.full((*seq.shape[:-1], length - seq.shape[-1]), fill, dtype=seq.dtype)
    return torch.cat([seq, pad], dim=-1)


def epoch_batches(lengths: Sequence[int], crop_len: int, batch_size: int, world_size: int = 1) -> int:
    """Batches each process takes in an epoch: all ``world_size`` processes together see about
    the sequences' total length once (one shorter than a crop counts as a crop); never zero.

    Under DDP a step is one batch on every process (their gradients averaged into one update),
    so this is also the epoch's number of steps.
    """
    total = sum(max(n, crop_len) for n in lengths)
    return max(1, math.ceil(total / (crop_len * batch_size * max(1, world_size))))


class RandomCropLoader:
    """An iterable of ``batches_per_epoch`` batches of random crops, with resumable state.

    Sequences are concatenated into one buffer (moved to a device by :meth:`to`); each
    batch picks files with probability proportional to their length and a uniform offset
    inside each, from a generator seeded by ``(seed, rank, index of the batch in the run)``.
    Sequences shorter than a crop are padded with ``fill``. ``state_dict``/``load_state_dict``
    follow Lightning's stateful-loader protocol: a resumed run continues with the next batch.

    ``frames`` (one ``(channels, length // hop)`` tensor per sequence, e.g. a mel) makes every
    crop start on a multiple of ``hop`` and batches ``(crops, frame crops)`` pairs: the frames
    that belong to each crop.

    ``start_fraction`` of the crops (on average) begin at their sequence's first sample. A
    uniform offset almost never does, yet every file and every generated clip has a first frame,
    and in one-shots it holds the attack.
    """

    def __init__(
        self,
        sequences: Sequence[torch.Tensor],
        crop_len: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        fill: float = 0.0,
        batches_per_epoch: int | None = None,
        frames: Sequence[torch.Tensor] | None = None,
        hop: int = 1,
        start_fraction: float = 0.0,
    ) -> None:
        padded = [fit_length(s, crop_len, fill) if s.shape[-1] < crop_len else s for s in sequences]
        if not padded:
            raise ValueError("RandomCropLoader needs at least one sequence")
        self.crop_len = crop_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        lengths = torch.tensor([s.shape[-1] for s in padded], dtype=torch.long)
        self._starts = torch.cumsum(lengths, 0) - lengths
        self._spans = lengths - crop_len + 1
        self._weights = lengths.double()
        self.buffer = torch.cat(list(padded), dim=-1)
        self.hop = hop
        self.start_fraction = start_fraction
        self.frames: torch.Tensor | None = None
        if frames is not None:
            if crop_len % hop or any(
                f.shape[-1] != s.shape[-1] // hop for f, s in zip(frames, padded, strict=True)
            ):
                raise ValueError("frames must hold length // hop frames per sequence, and crops whole frames")
            frame_lengths = torch.tensor([f.shape[-1] for f in frames], dtype=torch.long)
            self._frame_starts = torch.cumsum(frame_lengths, 0) - frame_lengths
            self.frames = torch.cat(list(frames), dim=-1)
        self.batches_per_epoch = batches_per_epoch or epoch_batches(
            lengths.tolist(), crop_len, batch_size, world_size
        )
        self._produced = 0  # batches handed out over the whole run
        self._resume_position = 0  # batches of the current epoch already consumed before a resume

    def to(self, device: torch.device | str) -> RandomCropLoader:
        self.buffer = self.buffer.to(device)
        if self.frames is not None:
            self.frames = self.frames.to(device)
        return self

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The ``index``-th batch of the run: (batch, [channels,] crop_len), with its frames if any."""
        g = torch.Generator().manual_seed(hash((self.seed, self.rank, index)) & 0x7FFF_FFFF_FFFF)
        files = torch.multinomial(self._weights, self.batch_size, replacement=True, generator=g)
        offsets = (torch.rand(self.batch_size, generator=g, dtype=torch.float64) * self._spans[files]).long()
        offsets = offsets // self.hop * self.hop
        if self.start_fraction > 0:  # drawn after the rest, so 0 leaves every batch as it was
            offsets[torch.rand(self.batch_size, generator=g) < self.start_fraction] = 0
        crops = self._crop(self.buffer, self._starts[files] + offsets, self.crop_len)
        if self.frames is None:
            return crops
        starts = self._frame_starts[files] + offsets // self.hop
        return crops, self._crop(self.frames, starts, self.crop_len // self.hop)

    @staticmethod
    def _crop(buffer: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
        positions = (starts[:, None] + torch.arange(length)).to(buffer.device, non_blocking=True)
        if buffer.dim() == 1:
            return buffer[positions]
        # (channels, total) -> (batch, channels, length)
        return buffer[:, positions].permute(1, 0, 2).contiguous()

    def __iter__(self) -> Iterator[torch.Tensor]:
        start, self._resume_position = self._resume_position, 0
        for _ in range(start, self.batches_per_epoch):
            index = self._produced
            self._produced += 1
            yield self.batch(index)

    def state_dict(self) -> dict[str, Any]:
        return {"produced": self._produced, "batches_per_epoch": self.batches_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._produced = int(state["produced"])
        self._resume_position = self._produced % self.batches_per_epoch


class CropDataModule(L.LightningDataModule):
    """Base of the stage DataModules: keeps the crop loader's position in every checkpoint.

    Lightning restores a loader's position only when it resumes mid-epoch; an epoch-end
    checkpoint would otherwise restart the crops from batch 0. The DataModule's own state is
    always saved and restored, so the position goes there too (subclasses set
    ``train_loader`` in ``setup``; a state loaded before that is applied then).
    """

    train_loader: RandomCropLoader | None = None
    _pending_loader_state: dict[str, Any] | None = None

    def _attach_loader(self, loader: RandomCropLoader) -> None:
        self.train_loader = loader
        if self._pending_loader_state is not None:
            loader.load_state_dict(self._pending_loader_state)
            self._pending_loader_state = None

    def state_dict(self) -> dict[str, Any]:
        return self.train_loader.state_dict() if self.train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if self.train_loader is None:
            self._pending_loader_state = dict(state_dict)
        else:
            self.train_loader.load_state_dict(state_dict)
