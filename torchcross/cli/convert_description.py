"""Task descriptions for ``torchcross medimeta convert medmnist`` files that are not MedMNIST datasets.

``--kind KIND --classes NAME ...`` or ``--description FILE`` (JSON or YAML:
``{"kind": "ordinal", "classes": ["none", "mild", "severe"], "task": "grade", "domain": "..."}``,
classes as a list in label order or as ``{key: name}``) describe the file's task.
Kinds: ``binary``, ``multiclass``, ``multilabel``, ``ordinal`` or a full ``TaskTarget`` name.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["GivenDescription", "given_description"]


_KINDS = {
    "binary": "BINARY_CLASSIFICATION",
    "multiclass": "MULTICLASS_CLASSIFICATION",
    "multi-class": "MULTICLASS_CLASSIFICATION",
    "multilabel": "MULTILABEL_CLASSIFICATION",
    "multi-label": "MULTILABEL_CLASSIFICATION",
    "ordinal": "ORDINAL_REGRESSION",
}


class GivenDescription:
    """A task kind and classes from ``--kind/--classes`` or ``--description``; the identifier comes on use.

    Raises:
        ValueError: for an unknown kind, classes that are neither a list of names nor a
            mapping of integer keys to names (naming where they came from).
    """

    def __init__(self, kind: str, classes: Any, task: str | None, domain: str, origin: str) -> None:
        from torchcross.tasks.task import TaskTarget

        try:
            target = TaskTarget.parse(
                _KINDS.get(kind.strip().lower(), kind) if isinstance(kind, str) else kind
            )
        except (TypeError, ValueError):
            raise ValueError(
                f"{origin}: unknown task kind {kind!r}; use binary, multiclass, multilabel or ordinal "
                "(or a full name such as ORDINAL_REGRESSION)"
            ) from None
        if isinstance(classes, (list, tuple)):
            classes = dict(enumerate(classes))
        if not isinstance(classes, dict) or not all(isinstance(v, str) for v in classes.values()):
            raise ValueError(
                f"{origin}: classes must be a list of names or a mapping key -> name, got {classes!r}"
            )
        try:
            self.classes = {int(k): v for k, v in classes.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{origin}: class keys must be integers, got {list(classes)}") from None
        self.target, self.task, self.domain, self.origin = target, task, domain, origin

    def description(self, identifier: str) -> Any:
        """The ``TaskDescription`` with this identifier (its classes checked for the kind)."""
        from torchcross.tasks.task import TaskDescription

        try:
            return TaskDescription(self.target, self.classes, identifier, self.domain)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.origin}: {exc}") from None


def given_description(args: argparse.Namespace) -> GivenDescription | None:
    """The task description from ``--kind/--classes`` or ``--description`` (``None`` if neither)."""
    if args.description is not None:
        if args.kind is not None or args.classes is not None:
            raise ValueError("give either --description or --kind/--classes, not both")
        return _read_description(Path(args.description), args.domain)
    if args.kind is None and args.classes is None:
        return None
    if args.kind is None or args.classes is None:
        raise ValueError("--kind and --classes go together (e.g. --kind ordinal --classes none mild severe)")
    return GivenDescription(args.kind, list(args.classes), None, args.domain or "", "--kind/--classes")


def _read_description(path: Path, domain: str | None) -> GivenDescription:
    import json

    from torchcross._io import read_regular_file

    if not os.path.lexists(path):
        raise FileNotFoundError(f"description file {str(path)!r} does not exist")
    data = read_regular_file(path, "description file")  # a FIFO or a device is refused, never read
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"description file {str(path)!r} is not UTF-8 text: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        from torchcross.datasets.medimeta.folder import load_yaml

        raw = load_yaml(text, str(path))  # refuses alias bombs, names the file
    else:
        raise ValueError(f"description file {str(path)!r} must end in .json, .yaml or .yml")
    allowed = ("kind", "classes", "task", "domain")
    if not isinstance(raw, dict) or "kind" not in raw or "classes" not in raw:
        raise ValueError(
            f"{path} must hold an object with 'kind' and 'classes' (and optionally 'task', 'domain')"
        )
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed keys: {', '.join(allowed)}")
    task = raw.get("task")
    return GivenDescription(raw["kind"], raw["classes"], task, domain or raw.get("domain") or "", str(path))
