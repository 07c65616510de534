"""Fixtures writing small folders in the exact MedIMeta on-disk format."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchcross.datasets.medimeta.writer import write_synthetic_medimeta

TASKS = ("class", "abnormal", "Finding labels", "severity grade")  # MC, BIN, ML, ORD


@pytest.fixture(scope="session")
def medimeta_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only MedIMeta data_path: ``toy`` (RGB, with TIFFs, one task per kind),
    ``gray`` (one channel) and ``bus`` (catalogue tasks). Do not modify it in tests."""
    root = tmp_path_factory.mktemp("medimeta")
    write_synthetic_medimeta(root, "toy", num_images=30, image_size=8, channels=3, seed=1, write_tiffs=True)
    write_synthetic_medimeta(root, "gray", num_images=25, image_size=6, channels=1, seed=2, write_tiffs=True)
    write_synthetic_medimeta(root, "bus", num_images=20, image_size=8, seed=3)
    return root


@pytest.fixture
def fresh_root(tmp_path: Path) -> Path:
    """A writable data_path with one RGB dataset ``toy`` (tests may break it)."""
    write_synthetic_medimeta(tmp_path, "toy", num_images=20, image_size=4, channels=3, seed=5)
    return tmp_path
