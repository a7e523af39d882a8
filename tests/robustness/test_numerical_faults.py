"""A run whose losses go non-finite never writes a non-finite value: it stops with one clear
line, and the model file keeps the last finite weights, which load and generate. (Files that do
hold non-finite weights are refused at load: see test_hostile_models.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from distillgan.callbacks import model_file
from distillgan.lightning_modules.hifigan import HiFiGANModule
from distillgan.modelfile import open_model
from distillgan.vocoders.hifigan import load_hifigan
from tests.cli.conftest import assert_one_line_error, invoke
from tests.robustness.harness import TINY_VOCODER, make_vae_model, write_recipe, write_short_corpus

POISONED_FROM_EPOCH = 2  # Lightning's count, from 0: the third epoch


def test_non_finite_losses_stop_the_run_and_never_reach_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    corpus = write_short_corpus(tmp_path / "corpus")
    models = tmp_path / "models"
    model = make_vae_model(corpus, models / "m.distillgan")
    recipe = write_recipe(
        tmp_path / "vocoder.yaml", TINY_VOCODER, max_nonfinite_steps=3, preview_interval=100
    )

    real_augment = HiFiGANModule.augment

    def poisoned(
        self: HiFiGANModule, audio: torch.Tensor, generator: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, gain = real_augment(self, audio, generator)
        return (out * float("nan") if self.current_epoch >= POISONED_FROM_EPOCH else out), gain

    writes: list[dict[str, dict[str, torch.Tensor]]] = []
    real_write = model_file.write_model

    def recording_write(path: Path, sections: dict[str, Any], **kwargs: Any) -> None:
        writes.append(
            {
                name: {key: torch.as_tensor(value).clone() for key, value in section.tensors.items()}
                for name, section in sections.items()
                if section is not None
            }
        )
        real_write(path, sections, **kwargs)

    monkeypatch.setattr(HiFiGANModule, "augment", poisoned)
    monkeypatch.setattr(model_file, "write_model", recording_write)
    result = invoke(
        ["train", "vocoder", "m", "--config", str(recipe), "--epochs", "6", "--models-dir", str(models)]
    )

    assert_one_line_error(result, "training stopped: the last", "non-finite losses", "last finite ones")
    assert len(writes) >= POISONED_FROM_EPOCH + 1, "the run stopped before the losses went bad"
    for i, write in enumerate(writes):
        for section, tensors in write.items():
            for key, tensor in tensors.items():
                assert not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()), (i, section, key)
    # every poisoned step was skipped: the file holds the weights of the last finite epoch
    kept = open_model(model).tensors("vocoder", prefix="generator")
    last_finite = writes[POISONED_FROM_EPOCH - 1]["vocoder"]
    assert kept.keys() == {k.removeprefix("generator/") for k in last_finite}
    for name, tensor in kept.items():
        assert torch.equal(tensor, last_finite[f"generator/{name}"]), name
    attrs = open_model(model).attrs("vocoder")
    assert attrs["status"] == "partial" and attrs["nonfinite_skipped"] >= 3
    assert open_model(model).has("vocoder_checkpoint")
    open_model(model).tree("vocoder_checkpoint")  # finite (a non-finite state is refused at load)
    load_hifigan(model)
