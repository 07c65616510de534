"""Frozen features for the protocol's methods that never adapt the backbone (``linear-probe``).

A method registered with ``frozen_features`` is evaluated on the target tasks' features instead of their
images: [`embedded_source()`][embedded_source] embeds every image of a target task once with the run's
backbone (eval mode, no autograd) through [`embed()`][embed] into the
embedding cache (``[run] embedding_cache``, default ``<out_dir>/embeddings``) and serves the features
as an [`EmbeddedSource`][EmbeddedSource] with the task's labels. Episodes are
functions of the labels, so the same episodes are drawn over it; every episode, seed and later run
with the same key reads the file instead of running the backbone again.

The cache key is

* backbone: a ``"<family>:<model>"`` backbone's identity (family, model, options and the digest of
  its weight files, ``"random:seed=<seed>"`` for random weights); a built-in backbone's name and
  filters with the digest of its weights (so a seeded random initialisation is keyed by its values);
  with ``[backbone] feature_dtype = "bfloat16"`` or ``[run] precision = "bf16"`` also ``feature_dtype``:
  the pass then runs the backbone and its inputs in bf16 (on the CPU too; the features are stored as
  float32), the same pass and key whichever of the two asks for it (the run's autocast is off for it);
* preprocessing: the backbone's own (input size, mean, std, interpolation, channels, crop), or
  ``[data] normalize`` with the input shape for the built-in backbones;
* data: [`data_identity()`][data_identity] of the task (dataset, task,
  split, labels checksum); the image bytes are not hashed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from torchcross.data.embeddings import EmbeddedSource, data_identity, embed

__all__ = ["cache_folder", "embedded_source"]


def cache_folder(config: Any) -> Path:
    """Where the run keeps cached features: ``[run] embedding_cache``, else ``<out_dir>/embeddings``.

    Examples:
        >>> from torchcross.protocol.config import config_from_dict
        >>> raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
        >>> cache_folder(config_from_dict(raw)).as_posix()
        'o/embeddings'
    """
    run = config.run
    return Path(run.embedding_cache) if run.embedding_cache is not None else Path(run.out_dir) / "embeddings"


def embedded_source(ctx: Any, source: Any) -> EmbeddedSource:
    """The features of every example of ``source`` under the run's backbone, cached, as a task source.

    Args:
        ctx: the method's [`MethodContext`][torchcross.protocol.registry.MethodContext] (its backbone,
            device and seed).
        source: a target task as the run opened it (images preprocessed for the backbone).

    Raises:
        torchcross.data.embeddings.EmbeddingCacheError: a damaged cache file, or one written for
            another key under this key's name (never used nor overwritten).
    """
    backbone, _ = ctx.build_backbone()
    config = ctx.config
    identity = getattr(backbone, "identity", None)
    if identity is not None:  # "<family>:<model>": the identity holds the weight files' digest
        ident: Any = identity.to_dict()
        preprocessing: Any = backbone.preprocessing.to_dict()
        hash_weights = identity.weights.startswith("random:")
        if hash_weights:
            ident["weights"] = f"random:seed={ctx.seed}"
    else:
        ident = {"name": config.backbone.name, "hidden": config.backbone.hidden}
        preprocessing = {
            "normalize": config.data.normalize,
            "channels": ctx.in_channels,
            "image_size": ctx.image_size,
        }
        hash_weights = True
    dtype = None
    if _bf16_features(config):  # [backbone] feature_dtype, or [run] precision: the same pass, the same key
        dtype = torch.bfloat16
        backbone = backbone.to(dtype)  # a copy of the run's backbone, for this pass only
        ident = {**ident, "feature_dtype": "bfloat16"}  # float32 keys stay as they were
    images = getattr(source, "source", source)  # the reader under the resizing wrapper names the task
    with torch.autocast(torch.device(ctx.device).type, enabled=False):  # the run's autocast: not this pass
        embeddings = embed(
            source,
            backbone,
            cache_folder(config),
            identity=ident,
            preprocessing=preprocessing,
            data=data_identity(images),
            hash_weights=hash_weights,
            device=ctx.device,
            dtype=dtype,
        )
    return EmbeddedSource(embeddings, source)


def _bf16_features(config: Any) -> bool:
    """Whether the frozen feature pass runs in bf16: ``[backbone] feature_dtype = "bfloat16"`` or ``[run]
    precision = "bf16"`` (which asks the same of this pass as of training and fine-tuning)."""
    feature_dtype = getattr(config.backbone, "feature_dtype", None)
    return feature_dtype == "bfloat16" or getattr(config.run, "precision", "fp32") == "bf16"
