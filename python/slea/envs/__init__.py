"""Gymnasium text environments of slea (registered as ``slea/<Name>-v0``)."""

from __future__ import annotations


def register_envs() -> None:
    """Register slea's environment ids with gymnasium (idempotent, imports nothing heavy)."""
