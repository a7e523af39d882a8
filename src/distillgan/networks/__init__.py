"""Plain PyTorch networks of distillgan (no Lightning); the training recipes live in lightning_modules."""
