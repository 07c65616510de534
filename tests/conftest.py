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

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    """Every test starts on one torch thread, as the processes that distributed tests spawn do.

    References computed in this process then reduce in the same order as the ranks, whatever an
    earlier test (or the thread policy of a protocol run) left behind; Adam amplifies the last-bit
    differences of other orders beyond float64 tolerances.
    """
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(12345)
