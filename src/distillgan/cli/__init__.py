"""The ``distillgan`` command line (Click + Rich). Heavy imports happen inside commands."""
