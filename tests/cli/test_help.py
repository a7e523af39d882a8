"""`distillgan --help` is instant: no torch, no gradio on that path."""

from __future__ import annotations

import subprocess
import sys
import time


def test_help_does_not_import_torch_or_gradio() -> None:
    code = (
        "import sys\n"
        "from distillgan.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'gradio', 'lightning', 'torchaudio', 'h5py') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "train" in out and "model" in out


def test_help_returns_in_under_a_second() -> None:
    best = float("inf")
    for _ in range(3):  # best of three: a loaded CI machine should not fail this by accident
        start = time.perf_counter()
        result = subprocess.run(["distillgan", "--help"], capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        assert result.returncode == 0
    assert best < 1.0, f"distillgan --help took {best:.2f} s"
