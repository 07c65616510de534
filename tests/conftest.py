"""Shared test configuration."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

# Fast, deterministic property-based tests: CI runs on 2 cores.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(12345)
