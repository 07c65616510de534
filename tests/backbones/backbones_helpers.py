"""Settings of the tiny models the backbone tests build (a module of its own, not ``conftest``, so that
``pytest tests/backbones tests/learners`` imports it by a name no other folder uses)."""

from tiny_foundation_models import TINY_VIT

__all__ = ["TINY_VIT"]
