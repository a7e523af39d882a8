"""The Gradio front end (`distillgan ui`): configures training runs and shows their progress.

No training logic lives here: :mod:`distillgan.ui.jobs` runs :func:`distillgan.training.train_vae`
and :func:`~distillgan.training.train_vocoder` in background threads and collects their
:class:`~distillgan.progress.ProgressEvent` s; the tabs poll those with a ``gr.Timer``.
"""
