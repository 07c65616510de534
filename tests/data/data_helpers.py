"""Helpers shared by the data tests."""

from __future__ import annotations

import pytest
import torch


def fake_distributed(monkeypatch: pytest.MonkeyPatch, rank: int, world_size: int) -> None:
    """Make ``torch.distributed`` report an initialised process group of ``world_size`` with this ``rank``."""
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world_size)
