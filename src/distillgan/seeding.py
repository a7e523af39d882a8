"""Random numbers of a run's own: nothing a run draws comes from torch's global generator.

The global generator is process-wide, and Lightning saves and restores it around every fit's
sanity check (``isolate_rng``). With two runs in one process (the UI runs one thread per job), a
run starting in one thread could rewind it in the middle of the other's network build, whose
weights would then depend on timing. So networks are built under :func:`seeded`, and training
draws from :func:`step_generators`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# What modules' constructors draw their initial weights with (nn.init's and the tensor methods
# under them); every one takes a ``generator``
_INITIALIZERS = {
    torch.Tensor.normal_,
    torch.Tensor.uniform_,
    nn.init.normal_,
    nn.init.uniform_,
    nn.init.trunc_normal_,
    nn.init.kaiming_normal_,
    nn.init.kaiming_uniform_,
    nn.init.xavier_normal_,
    nn.init.xavier_uniform_,
    nn.init.orthogonal_,
}


class _Initializers(TorchFunctionMode):
    """Hands ``generator`` to every initializer called without one. Torch function modes are
    per thread, so other threads keep drawing from wherever they draw."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _INITIALIZERS and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        return func(*args, **kwargs)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Within: networks built in this thread take their initial weights from a generator seeded
    by ``seed`` alone (build them on the CPU: the generator is a CPU one)."""
    with _Initializers(torch.Generator().manual_seed(seed)):
        yield


def step_generators(
    seed: int, rank: int, step: int, device: torch.device
) -> tuple[torch.Generator, torch.Generator]:
    """Generators for one training step (CPU, and ``device``), seeded by the run's seed, the
    process's rank and the step: the same draws after a resume, another stream per rank."""
    # integers only: tuple-of-int hashes are stable across processes (str hashes are salted)
    value = hash((seed, rank, step, 0xA06)) & 0x7FFF_FFFF_FFFF
    cpu = torch.Generator().manual_seed(value)
    return cpu, cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(value)
