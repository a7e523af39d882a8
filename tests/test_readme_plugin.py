"""The README's "Use distillgan as a Lightning plugin" example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from distillgan.modelfile import open_model

README = Path(__file__).resolve().parents[1] / "README.md"


def plugin_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use distillgan as a Lightning plugin", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the plugin section should hold one Python example"
    return blocks[0]


def test_readme_plugin_example_trains_a_vocoder_into_a_model_file(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(plugin_example())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny networks: one thread is fastest on a shared CPU
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    known = {"start", "step", "epoch", "preview", "checkpoint", "end"}  # Lightning prints its own lines too
    kinds = [
        line.split()[0] for line in done.stdout.splitlines() if line.split() and line.split()[0] in known
    ]
    assert kinds[0] == "start" and kinds[-1] in ("end", "checkpoint") and kinds.count("epoch") == 2
    reader = open_model(tmp_path / "my_vocoder.distillgan")
    attrs = reader.attrs("vocoder")
    assert (attrs["status"], attrs["epochs_completed"]) == ("complete", 2)
    assert attrs["val_mel_l1_last"] > 0
    assert not reader.has("vocoder_checkpoint")
    # one preview per held-out clip (14 sounds: one whole file held out, one clip of it)
    previews = tmp_path / "previews"
    assert (
        len(list(previews.glob("epoch-0002_clip-*.wav")))
        == len(list(previews.glob("reference_clip-*.wav")))
        == 1
    )
