"""Variants of the built-in trainers, as values: a method's variant is an instance it holds, never its name.

The registry gives each method its variant (``register_method(..., variant=...)``; a method
registered ``like=`` another takes that one's), the method's context hands it to the trainer
(``ctx.variant``), and every fingerprint of the method's results includes it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["MetaLearnVariant"]


@dataclass(frozen=True)
class MetaLearnVariant:
    """What the episodic trainer (``train_maml``) meta-trains: MAML, one of its variants, or ProtoNet.

    The built-in methods are instances: mm-MAML ``MetaLearnVariant()``, FOMAML
    ``(first_order=True)``, ANIL ``(anil=True)``, Meta-SGD ``(meta_sgd=True)``, ProtoNet
    ``(protonet=True)``; flags combine (a first-order ANIL).

    Attributes:
        first_order: first-order MAML (``[maml] first_order = true`` turns it on for every variant).
        anil: adapt only the head in the inner loop.
        meta_sgd: learn per-parameter inner learning rates.
        protonet: prototypical networks instead of MAML (the other flags must be off).

    Raises:
        TypeError: a flag that is not a bool.
        ValueError: ``protonet`` with a MAML flag.

    Examples:
        >>> MetaLearnVariant(anil=True).own_adaptation, MetaLearnVariant(first_order=True).own_adaptation
        (True, False)
    """

    first_order: bool = False
    anil: bool = False
    meta_sgd: bool = False
    protonet: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool):
                raise TypeError(f"MetaLearnVariant {f.name} must be True or False, got {value!r}")
        if self.protonet and (self.first_order or self.anil or self.meta_sgd):
            raise ValueError(
                "MetaLearnVariant(protonet=True) trains prototypical networks, which have no inner loop; "
                "set first_order, anil and meta_sgd to False"
            )

    @property
    def own_adaptation(self) -> bool:
        """Evaluated with what it learned (ANIL's and Meta-SGD's inner loop, ProtoNet's prototypes).

        Otherwise (MAML, FOMAML) as ``[maml] evaluation`` says: fine-tuning or the inner loop.
        """
        return self.anil or self.meta_sgd or self.protonet
