"""Trainer, configuration, checkpoints and logging."""
