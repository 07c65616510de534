"""The ``zero-shot`` method: CLIP zero-shot on the target episodes' query sets, configured by ``[zero-shot]``.

It trains nothing and ignores the support sets: each query image is scored against prompts of the task's
class names (see [`ZeroShotClassifier`][ZeroShotClassifier]), on the same fixed episodes and with the
same metrics as every other method. It needs a CLIP-style backbone, one that carries a text tower
(``[backbone] name = "open_clip:<model>"``, or ``"hf:<CLIP folder>"``: the method declares
``needs_text_tower``, so the folder is loaded as ``CLIPModel`` with its text tower for it, while the
other methods of the run get the plain image model); any other backbone, and an ordinal target task (its
declared ``task_types``), is refused by ``torchcross run --check`` before anything trains. Like
``linear-probe`` it is registered with ``frozen_features``: the run hands it the target tasks' image
features from the embedding cache (`torchcross.protocol.frozen`), computed once per image and shared
with the linear probe of the same backbone.

Examples:
    >>> from torchcross.protocol.schema import section_from_dict
    >>> section_from_dict("zero-shot", ZeroShotConfig, {"template": "a chest X-ray showing {}."})
    ZeroShotConfig(template=('a chest X-ray showing {}.',), negative='no {}')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchcross.learners.zero_shot import ZeroShotClassifier

__all__ = ["ZeroShotConfig", "zero_shot_learner"]


def _templates(where: str, value: Any) -> tuple[str, ...]:
    """One template or a non-empty list of them, each a string with ``{}`` or ``{class_name}``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(t, str) for t in items):
        raise TypeError(
            f"{where} must be a template string with '{{}}' for the class name (e.g. 'a photo of {{}}.') or "
            f"a non-empty list of them, got {value!r}"
        )
    from torchcross.learners.zero_shot import class_prompts
    from torchcross.tasks.task import TaskDescription

    try:  # the library's own checks, with their messages
        class_prompts(TaskDescription("BINARY_CLASSIFICATION", {0: "a", 1: "b"}), list(items))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return tuple(items)


@dataclass(frozen=True)
class ZeroShotConfig:
    """``[zero-shot]``: the prompts of the ``zero-shot`` method.

    Attributes:
        template: the prompt of a class, ``{}`` standing for its name (``"a photo of {}."``), or a list
            of them: a prompt ensemble (their normalised text embeddings averaged).
        negative: multi-label tasks: the negative of a label name put into the template (``"no {}"``:
            ``"a photo of no effusion."``), or one phrase for every label (``"nothing"``, as the MedIMeta
            authors' ``CLIPClassifier``).
    """

    template: tuple[str, ...] = field(default=("a photo of {}.",), metadata={"parse": _templates})
    negative: str = "no {}"


def zero_shot_learner(ctx: Any, trained: Any) -> ZeroShotClassifier:
    """zero-shot: the run's backbone (it must carry a text tower) with the ``[zero-shot]`` prompts.

    ``ctx`` is the method's [`MethodContext`][torchcross.protocol.registry.MethodContext] (not imported
    here: the registry imports this module for `ZeroShotConfig`).
    """
    from torchcross.learners.zero_shot import ZeroShotClassifier, find_text_tower

    backbone, _ = ctx.build_backbone()
    section = ctx.section
    try:
        tower = find_text_tower(backbone)
    except ValueError as exc:
        method = getattr(ctx, "method", "zero-shot")
        raise ValueError(
            f"method {method!r} on {ctx.target.dataset_id}: {exc}; set [backbone] name = "
            f"'open_clip:<model>' or 'hf:<CLIP folder>', or leave {method!r} out of [evaluation] methods"
        ) from None
    tower.model.to(ctx.device)  # the text side is not a submodule of the backbone: move it too
    # the run evaluates it on cached image features (frozen_features), not on images
    return ZeroShotClassifier(backbone, section.template, negative=section.negative, inputs="features")
