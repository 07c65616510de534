"""CLIP zero-shot classification: class prompts from a task's class names, scored against image features.

No support set and no training: each class name of the task (``TaskDescription.classes``, the names
MedIMeta's ``info.yaml`` stores) is put into a prompt template, the prompts are embedded by the backbone's
[`TextTower`][TextTower], and an image's logit for a class is the cosine similarity of its L2-normalised
image features and the class's L2-normalised text embedding, times the model's logit scale
(``exp(model.logit_scale)``, as in CLIP's training). Per task kind:

=============  ========================================================================================
kind           logits (``s(p)`` = scaled cosine similarity of the image and prompt ``p``)
=============  ========================================================================================
multi-class    ``(N, K)``: ``s(class k)`` per class, in class-key order (softmax over them)
binary         ``(N, 1)``: ``s(class 1) - s(class 0)``: the positive class's score, as the metrics read it
multi-label    ``(N, K)``: ``s(label k) - s(negative of label k)`` per label (sigmoid per label)
=============  ========================================================================================

A multi-label image may show several findings or none, so each label is a choice of two prompts: the
label's (``template`` with the label name) and its negative's (``template`` with ``negative`` around the
label name: ``"no {}"`` gives ``"a photo of no effusion."``). A ``negative`` without ``{}`` is one phrase
for every label: ``negative="nothing"`` compares each label with ``"a photo of nothing."``, what the
MedIMeta authors' ``CLIPClassifier`` does (its binary logit is ``s(class 1) - s(class 0)`` as here).
Ordinal tasks (ordered levels a prompt per level cannot rank) and regression tasks are refused.

A template is a string with ``{}`` (or ``{class_name}``) where the class name goes, a function of the
class name, or a list of them: a prompt ensemble, whose text embeddings are L2-normalised, averaged and
normalised again (CLIP's ImageNet recipe).

Examples:
    >>> import torch
    >>> from torchcross.tasks.task import TaskDescription
    >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "healthy lungs", 1: "pneumonia"})
    >>> class_prompts(d, "a chest X-ray showing {}.")
    (('a chest X-ray showing healthy lungs.',), ('a chest X-ray showing pneumonia.',))
    >>> text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # the two classes' text embeddings
    >>> images = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    >>> zero_shot_logits(images, text, d, logit_scale=10.0).squeeze(1)
    tensor([-10.,   0.,  10.])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchcross.backbones.backbone import Backbone, TextTower
from torchcross.tasks.task import Task, TaskDescription, TaskTarget

__all__ = [
    "DEFAULT_NEGATIVE",
    "DEFAULT_TEMPLATE",
    "ZeroShotClassifier",
    "class_prompts",
    "encode_prompts",
    "find_text_tower",
    "logit_scale_of",
    "zero_shot_logits",
]

Template = str | Callable[[str], str]
"""A prompt template: a string with ``{}`` (or ``{class_name}``) for the class name, or a function of it."""

DEFAULT_TEMPLATE = "a photo of {}."
"""The template of CLIP's zero-shot examples."""

DEFAULT_NEGATIVE = "no {}"
"""The negative of a multi-label label's name, put into the template: ``"a photo of no effusion."``."""

_KINDS = (
    TaskTarget.MULTICLASS_CLASSIFICATION,
    TaskTarget.BINARY_CLASSIFICATION,
    TaskTarget.MULTILABEL_CLASSIFICATION,
)


def _templates(template: Template | Sequence[Template], what: str = "template") -> tuple[Template, ...]:
    """``template`` as a non-empty tuple of checked templates."""
    items = (template,) if isinstance(template, str) or callable(template) else template
    if not isinstance(items, Sequence) or not items:
        raise TypeError(
            f"{what} must be a string with '{{}}' for the class name, a function of the class name, or a "
            f"non-empty list of them, got {template!r}"
        )
    for t in items:
        if isinstance(t, str):
            if "{}" not in t and "{class_name}" not in t and what == "template":
                raise ValueError(
                    f"template {t!r} has no '{{}}' where the class name goes; write e.g. 'a photo of {{}}.'"
                )
            try:
                t.format("x", class_name="x")
            except (IndexError, KeyError, ValueError) as exc:
                raise ValueError(
                    f"{what} {t!r} cannot be filled with a class name ({type(exc).__name__}: {exc}); use "
                    "one '{}' (or '{class_name}') and double other braces ('{{', '}}')"
                ) from None
        elif not callable(t):
            raise TypeError(f"a {what} must be a string or a function of the class name, got {t!r}")
    return tuple(items)


def _negative(negative: Template) -> Template:
    """``negative`` checked: one string (with or without ``{}``) or one function of the label name."""
    if not (isinstance(negative, str) or callable(negative)):
        raise TypeError(
            f"negative must be one string ('no {{}}', or 'nothing' for every label) or a function of the "
            f"label name, got {negative!r}"
        )
    return _templates(negative, "negative")[0]


def _fill(template: Template, name: str) -> str:
    out = template.format(name, class_name=name) if isinstance(template, str) else template(name)
    if not isinstance(out, str):
        raise TypeError(f"template {template!r} returned {type(out).__name__} for {name!r}, not a string")
    return out


def _check_kind(description: TaskDescription) -> None:
    kind = description.task_target
    if kind not in _KINDS:
        raise ValueError(
            f"zero-shot classification does not support the {kind.name} task "
            f"{description.task_identifier!r}: it scores one prompt per class (binary, multi-class) or per "
            "label (multi-label), which cannot rank ordered levels or predict a value; evaluate this task "
            "with a few-shot method (linear-probe, IM-PT) instead"
        )


def class_prompts(
    description: TaskDescription,
    template: Template | Sequence[Template] = DEFAULT_TEMPLATE,
    *,
    negative: Template = DEFAULT_NEGATIVE,
) -> tuple[tuple[str, ...], ...]:
    """The prompts of a task: one group per text embedding its logits compare, one prompt per template.

    Multi-class and binary tasks: one group per class, in class-key order. Multi-label tasks: one group
    per label, then one per label's negative (``negative`` filled with the label name, then put into each
    template).

    Args:
        description: the task; its class names fill the templates.
        template: a string with ``{}`` or ``{class_name}``, a function of the class name, or a list of
            them (an ensemble).
        negative: multi-label only: the negative of a label name (``"no {}"``), or one phrase for every
            label (``"nothing"``), or a function of the label name.

    Raises:
        ValueError: an ordinal or regression task, or a template without a place for the class name.

    Examples:
        >>> d = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "effusion", 1: "mass"})
        >>> for group in class_prompts(d, ["{}", "an X-ray with {}"]):
        ...     print(group)
        ('effusion', 'an X-ray with effusion')
        ('mass', 'an X-ray with mass')
        ('no effusion', 'an X-ray with no effusion')
        ('no mass', 'an X-ray with no mass')
    """
    if not isinstance(description, TaskDescription):
        raise TypeError(f"description must be a TaskDescription, got {type(description).__name__}")
    _check_kind(description)
    templates = _templates(template)
    names = [description.classes[k] for k in description.class_keys]
    if description.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        neg = _negative(negative)
        names = [*names, *(_fill(neg, name) for name in names)]
    return tuple(tuple(_fill(t, name) for t in templates) for name in names)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def encode_prompts(text_tower: TextTower, prompts: Sequence[Sequence[str]]) -> Tensor:
    """Text embeddings ``(len(prompts), D)``: each group's normalised prompt embeddings, averaged, normalised.

    The text model runs in eval mode without gradients (its mode is restored); the result is float32 on the
    text model's device.
    """
    groups = [list(g) for g in prompts]
    if not groups or any(not g or isinstance(g, str) for g in groups):
        raise ValueError(f"prompts must be a non-empty list of non-empty lists of strings, got {prompts!r}")
    with _eval_mode(text_tower.model):
        flat = F.normalize(text_tower.encode_text([p for g in groups for p in g]).float(), dim=-1)
    sizes = [len(g) for g in groups]
    means = torch.stack([chunk.mean(0) for chunk in flat.split(sizes)])
    return F.normalize(means, dim=-1)


def zero_shot_logits(
    image_features: Tensor, text_features: Tensor, description: TaskDescription, logit_scale: float
) -> Tensor:
    """Zero-shot logits of images against the prompts of `class_prompts()`.

    Args:
        image_features: ``(N, D)`` image embeddings (normalised here).
        text_features: ``(P, D)`` prompt embeddings in `class_prompts()`' order (normalised here): ``K``
            rows for multi-class, 2 for binary, ``2K`` (labels, then negatives) for multi-label.
        description: the task.
        logit_scale: the factor of the cosine similarities (CLIP's ``exp(logit_scale)``, about 100).

    Returns:
        ``(N, K)`` (multi-class, multi-label) or ``(N, 1)`` (binary) logits, as
        [`compute_metrics()`][torchcross.evaluation.metrics.compute_metrics] reads them.

    Raises:
        ValueError: an ordinal or regression task, or ``text_features`` of another row count or width.
    """
    _check_kind(description)
    k = description.num_classes
    rows = 2 * k if description.task_target is TaskTarget.MULTILABEL_CLASSIFICATION else k
    if image_features.dim() != 2 or text_features.dim() != 2:
        raise ValueError(
            f"image_features must be (N, D) and text_features (P, D), got {tuple(image_features.shape)} and "
            f"{tuple(text_features.shape)}"
        )
    if text_features.shape[0] != rows or text_features.shape[1] != image_features.shape[1]:
        raise ValueError(
            f"{description.task_target.name} task {description.task_identifier!r} needs text_features of "
            f"shape ({rows}, {image_features.shape[1]}) (class_prompts' order), got "
            f"{tuple(text_features.shape)}"
        )
    image = F.normalize(image_features.float(), dim=-1)
    text = F.normalize(text_features.float().to(image.device), dim=-1)
    sims = float(logit_scale) * image @ text.T
    if description.task_target is TaskTarget.BINARY_CLASSIFICATION:
        return sims[:, 1:] - sims[:, :1]
    if description.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        return sims[:, :k] - sims[:, k:]
    return sims


def find_text_tower(backbone: nn.Module) -> TextTower:
    """The text tower of a CLIP-style backbone (``backbone.text_tower``, or that of a module inside it).

    Raises:
        ValueError: no text tower, naming the backbone and what to use instead.
    """
    for module in backbone.modules():
        tower = getattr(module, "text_tower", None)
        if isinstance(tower, TextTower):
            return tower
    name = type(backbone).__name__
    hint = ""
    for module in backbone.modules():
        if isinstance(module, Backbone):
            name = f"{module.identity.family}:{module.identity.model}"
            if module.identity.family == "hf":
                hint = (
                    " (a 'hf:' backbone is the image classifier alone; load a Hugging Face CLIP folder with "
                    "its text model: load_backbone('hf:<folder>', text_tower=True), or through OpenCLIP: "
                    "'open_clip:hf-hub:<id>')"
                )
            break
    raise ValueError(
        f"backbone {name} has no text tower, so it cannot embed class prompts: zero-shot needs a CLIP-style "
        f"backbone such as load_backbone('open_clip:<model>', <weights>){hint}"
    )


def logit_scale_of(text_tower: TextTower) -> float:
    """The CLIP model's logit scale, ``exp(model.logit_scale)``.

    Raises:
        ValueError: the model has no ``logit_scale``; pass ``logit_scale=`` to the classifier.
    """
    value = getattr(text_tower.model, "logit_scale", None)
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise ValueError(
            f"the text tower's model ({type(text_tower.model).__name__}) has no scalar logit_scale; pass "
            "logit_scale= (CLIP's is 100)"
        )
    return float(value.detach().float().exp())


class ZeroShotClassifier:
    """A CLIP-style backbone as a zero-shot [`Predictor`][torchcross.evaluation.episodic.Predictor].

    ``predict(task)`` ignores the support set and returns logits for the query set, from prompts of the
    task's class names (embedded once per task description and cached). Nothing is trained; the backbone
    and the text model run in eval mode without gradients (their modes are restored).

    Args:
        backbone: maps images ``(N, C, H, W)`` to image embeddings and carries a text tower
            (``load_backbone("open_clip:...")``, ``load_backbone("hf:<CLIP folder>", text_tower=True)``,
            or a module containing one).
        template: a string with ``{}``, a function of the class name, or a list of them (an ensemble).
        negative: the negative of a multi-label label (see [`class_prompts()`][class_prompts]).
        logit_scale: the factor of the cosine similarities; ``None``: the model's own.
        inputs: ``"images"``, or ``"features"`` when the tasks hold this backbone's image features
            already (an [`EmbeddedSource`][torchcross.data.embeddings.EmbeddedSource]): the backbone is
            then not run.
        dtype: autocast the image pass to this dtype (``torch.bfloat16`` on a GPU), or ``None``.

    Raises:
        ValueError: a backbone without a text tower, naming it and what to use.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torchcross.backbones import Backbone, BackboneIdentity, Preprocessing, TextTower
        >>> emb = nn.Embedding(10, 4)
        >>> tokenize = lambda texts: torch.tensor([len(t) % 10 for t in texts])
        >>> tower = TextTower(emb, tokenize, lambda model, tokens: model(tokens))
        >>> b = Backbone(
        ...     nn.Flatten(),
        ...     Preprocessing((2, 2), (0.0,), (1.0,), channels=1),
        ...     BackboneIdentity("custom", "toy", "none"),
        ...     text_tower=tower,
        ... )
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "cat", 1: "horse", 2: "zebra"})
        >>> clf = ZeroShotClassifier(b, "{}", logit_scale=100.0)
        >>> clf.logits(torch.randn(5, 1, 2, 2), d).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        backbone: nn.Module,
        template: Template | Sequence[Template] = DEFAULT_TEMPLATE,
        *,
        negative: Template = DEFAULT_NEGATIVE,
        logit_scale: float | None = None,
        inputs: Literal["images", "features"] = "images",
        dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module with a text tower, got {type(backbone).__name__}")
        if inputs not in ("images", "features"):
            raise ValueError(f"inputs must be 'images' or 'features', got {inputs!r}")
        self.backbone = backbone
        self.text_tower = find_text_tower(backbone)
        self.templates = _templates(template)
        self.negative = _negative(negative)
        if logit_scale is not None and not float(logit_scale) > 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale!r}")
        self.logit_scale = logit_scale_of(self.text_tower) if logit_scale is None else float(logit_scale)
        self.inputs = inputs
        self.dtype = dtype
        self._text: dict[tuple[Any, ...], Tensor] = {}

    def prompts(self, description: TaskDescription) -> tuple[tuple[str, ...], ...]:
        """The task's prompts (see [`class_prompts()`][class_prompts])."""
        return class_prompts(description, self.templates, negative=self.negative)

    def text_features(self, description: TaskDescription) -> Tensor:
        """The task's normalised prompt embeddings ``(P, D)``, computed once per kind and class names."""
        key = (description.task_target, tuple(description.classes.items()))
        if key not in self._text:
            self._text[key] = encode_prompts(self.text_tower, self.prompts(description))
        return self._text[key]

    def image_features(self, inputs: Tensor) -> Tensor:
        """Image embeddings ``(N, D)`` of ``inputs`` (returned as given with ``inputs="features"``)."""
        if self.inputs == "features":
            return inputs.float()
        with _eval_mode(self.backbone):
            on = inputs.device.type
            with torch.autocast(on, dtype=self.dtype, enabled=self.dtype is not None):
                out = self.backbone(inputs)
        return out.float()

    def logits(self, inputs: Tensor, description: TaskDescription) -> Tensor:
        """Zero-shot logits of ``inputs`` for the task ``description`` (see `zero_shot_logits()`)."""
        _check_kind(description)
        image = self.image_features(inputs)
        return zero_shot_logits(image, self.text_features(description), description, self.logit_scale)

    def predict(self, task: Task) -> Tensor:
        """Logits of the query set of ``task`` (its support set is not used)."""
        return self.logits(task.query[0], task.description)

    __call__ = predict
