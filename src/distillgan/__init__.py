"""distillgan: a generative sound model and a per-model neural vocoder from your own audio corpus.

Importing the package is cheap (no torch); the Lightning plugin classes live in
``distillgan.lightning_modules`` and ``distillgan.callbacks``.
"""

__version__ = "0.1.0"
