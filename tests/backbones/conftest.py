"""Tiny, randomly initialised models of every family, built offline (no hub is ever reached).

The models themselves are built by ``tests/tiny_foundation_models.py``, which ``tests/protocol`` shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_foundation_models import CLIP_CONFIG, CLIP_NAME, hub_offline, register_clip, save_hf_models

__all__ = ["CLIP_CONFIG", "CLIP_NAME"]


@pytest.fixture(scope="session", autouse=True)
def _offline() -> Iterator[None]:
    """Nothing in these tests may reach the Hugging Face hub."""
    with hub_offline():
        yield


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"vit", "dinov2", "resnet"}``: tiny Hugging Face models saved with their image processors."""
    return save_hf_models(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="session")
def clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny OpenCLIP model config, registered with ``open_clip.add_model_config``."""
    return register_clip(tmp_path_factory.mktemp("clip"))
