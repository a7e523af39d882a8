"""Lightning callbacks of distillgan: everything around training that has side effects."""

from distillgan.callbacks.bigvgan_score import BigVGANScore
from distillgan.callbacks.cancel import CancelOnRequest
from distillgan.callbacks.model_file import ModelFileCheckpoint, ModelFileCheckpointIO
from distillgan.callbacks.previews import AudioPreviews
from distillgan.callbacks.progress import ProgressReporter

__all__ = [
    "AudioPreviews",
    "BigVGANScore",
    "CancelOnRequest",
    "ModelFileCheckpoint",
    "ModelFileCheckpointIO",
    "ProgressReporter",
]
