"""Settings of the tiny models the backbone tests build (a module of its own, not ``conftest``, so that
``pytest tests/backbones tests/learners`` imports it by a name no other folder uses)."""

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
