"""A bound on what a test's process may allocate: proof that reading a hostile file allocates
nothing large, and a safety net that keeps a regression from eating the test machine."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def address_space_limit(extra_bytes: int) -> Iterator[None]:
    """Inside, mapping more than ``extra_bytes`` beyond what the process maps now fails at once
    (torch raises RuntimeError, Python MemoryError) instead of reaching the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = mapped + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, mapped + extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
