"""A feature extractor with what it needs to be used and cached: width, preprocessing, identity.

[`Backbone`][Backbone] wraps a module that maps images ``(N, C, H, W)`` to features
``(N, num_features)``. It is an ordinary ``nn.Module`` (every learner takes it, ``torch.func``
calls it), and it carries

* ``num_features``, the width of its output, checked by a forward pass when it is built;
* ``preprocessing``, the [`Preprocessing`][Preprocessing] read from
  the model's own configuration;
* ``identity``, a [`BackboneIdentity`][BackboneIdentity] (family, model, weights digest, options) that,
  with ``preprocessing.to_dict()``, keys an embedding cache;
* ``text_tower``, for CLIP-style models, the [`TextTower`][TextTower] that embeds class prompts in the
  image features' space (zero-shot); None otherwise.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from torchcross.backbones.preprocessing import Preprocessing
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> p = Preprocessing((8, 8), (0.5,) * 3, (0.5,) * 3)
    >>> b = Backbone(net, p, BackboneIdentity("custom", "tiny-conv", "random:seed=0"))
    >>> b.num_features, b(torch.zeros(2, 3, 8, 8)).shape
    (4, torch.Size([2, 4]))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from torchcross.backbones.preprocessing import Preprocessing

__all__ = ["Backbone", "BackboneIdentity", "TextTower"]


@dataclass(frozen=True)
class BackboneIdentity:
    """What makes two backbones compute the same features: family, model, weights and options.

    Args:
        family: ``"timm"``, ``"hf"``, ``"open_clip"``, ``"torchvision"`` (or a name of yours).
        model: the model's name in its family (a folder is written as given).
        weights: ``"sha256:<hex>"`` of the weight files, or ``"random:seed=<seed>"``.
        options: the keyword arguments the model was built with, as sorted ``(key, JSON)`` pairs.

    Examples:
        >>> BackboneIdentity("timm", "resnet18", "random:seed=0").to_dict()
        {'family': 'timm', 'model': 'resnet18', 'weights': 'random:seed=0', 'options': {}}
    """

    family: str
    model: str
    weights: str
    options: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def build(cls, family: str, model: str, weights: str, options: Mapping[str, Any]) -> BackboneIdentity:
        """An identity whose options are given as a mapping of JSON-able values.

        Raises:
            TypeError: an option value that is not JSON (a tensor, a function).
        """
        pairs = []
        for key in sorted(options):
            try:
                pairs.append((str(key), json.dumps(options[key], sort_keys=True)))
            except TypeError:
                raise TypeError(
                    f"backbone option {key}={options[key]!r} is not a JSON value (a number, string, list "
                    "or dict); pass plain values so that the backbone has a stable identity"
                ) from None
        return cls(family, model, weights, tuple(pairs))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, stable across runs: a cache key."""
        return {
            "family": self.family,
            "model": self.model,
            "weights": self.weights,
            "options": {k: json.loads(v) for k, v in self.options},
        }


@dataclass(frozen=True, eq=False)
class TextTower:
    """The text side of a CLIP-style model: prompts to embeddings in the image features' space.

    Args:
        model: the full CLIP model (it shares its image tower with the backbone; move it with
            ``text_tower.model.to(device)``).
        tokenizer: strings to token ids.
        encode: ``(model, tokens) -> (N, D)`` text embeddings (not normalised).
    """

    model: nn.Module
    tokenizer: Callable[[Sequence[str]], Tensor]
    encode: Callable[[nn.Module, Tensor], Tensor]

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Embeddings ``(len(texts), D)`` of ``texts`` (not normalised), on the model's device."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got one string; wrap it in a list")
        device = next(self.model.parameters()).device
        return self.encode(self.model, self.tokenizer(list(texts)).to(device))


class Backbone(nn.Module):
    """A feature extractor ``(N, C, H, W) -> (N, num_features)`` with its preprocessing and identity.

    Built by [`load_backbone()`][torchcross.backbones.load.load_backbone]; wrap a module of your own
    directly. Final: change it by wrapping, not by subclassing.

    Args:
        model: maps a preprocessed batch to features ``(N, width)``.
        preprocessing: what inputs it expects.
        identity: what it is, for caches and results.
        text_tower: the text side of a CLIP-style model, or None.

    Attributes:
        num_features: the feature width, measured by one forward pass of a zero image in eval mode.
        unused_parameters: the model's parameters that this forward pass does not reach (DINOv2's
            ``mask_token``, used only in masked pre-training). They become buffers (same names, same
            values, still in the ``state_dict``), so that learners that differentiate with respect to
            every parameter (fine-tuning, MAML's inner loop) see only those that reach the features.

    Raises:
        ValueError: the model does not output ``(N, width)`` features.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessing: Preprocessing,
        identity: BackboneIdentity,
        text_tower: TextTower | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(preprocessing, Preprocessing):
            raise TypeError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
        if not isinstance(identity, BackboneIdentity):
            raise TypeError(f"identity must be a BackboneIdentity, got {type(identity).__name__}")
        self.model = model
        self.preprocessing = preprocessing
        self.identity = identity
        # a plain attribute, not a submodule: its parameters are not the backbone's (learners adapt the
        # image side only)
        self.text_tower = text_tower
        self.num_features, unused = _measure_width(model, preprocessing, identity)
        _to_buffers(model, unused)
        self.unused_parameters = tuple(unused)

    def forward(self, images: Tensor) -> Tensor:
        """Features ``(N, num_features)`` of preprocessed images ``(N, channels, *input_size)``."""
        return self.model(images)

    def features(self, images: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
        """The frozen feature pass: no gradients, eval mode for the call, optionally autocast to ``dtype``.

        ``dtype=torch.bfloat16`` runs the pass under ``torch.autocast`` on the images' device (on a GPU
        this roughly halves time and memory for large models; on the CPU, autocast runs the same
        bfloat16 kernels, usually no faster). The features come back in float32 either way. The module's
        train/eval mode is restored afterwards.

        Examples:
            >>> from torch import nn
            >>> from torchcross.backbones.preprocessing import Preprocessing
            >>> b = Backbone(
            ...     nn.Flatten(),
            ...     Preprocessing((2, 2), (0.0,), (1.0,), channels=1),
            ...     BackboneIdentity("custom", "flatten", "none"),
            ... )
            >>> b.features(torch.ones(3, 1, 2, 2), dtype=torch.bfloat16).dtype
            torch.float32
        """
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
                out = self.model(images)
        finally:
            self.train(was_training)
        return out.float()

    def extra_repr(self) -> str:
        """The identity and width, shown by ``print(backbone)``."""
        who = self.identity
        return f"family={who.family!r}, model={who.model!r}, num_features={self.num_features}"


def _measure_width(
    model: nn.Module, preprocessing: Preprocessing, identity: BackboneIdentity
) -> tuple[int, list[str]]:
    """The feature width, and the trainable parameters that the feature pass does not reach."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(1, preprocessing.channels, *preprocessing.input_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"backbone {identity.family}:{identity.model} must map images (N, C, H, W) to features "
            f"(N, width), got {shape} for one image of size {preprocessing.input_size}"
        )
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    unused: list[str] = []
    if named and out.requires_grad:
        grads = torch.autograd.grad(out.sum(), [p for _, p in named], allow_unused=True)
        unused = [k for (k, _), g in zip(named, grads) if g is None]
    return int(out.shape[1]), unused


def _to_buffers(model: nn.Module, names: list[str]) -> None:
    """Turn the parameters ``names`` into (persistent) buffers of the same name and value."""
    for name in names:
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        value = getattr(owner, leaf).detach()
        delattr(owner, leaf)
        owner.register_buffer(leaf, value)
