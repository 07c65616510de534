"""Bugs that type-checking the package (``mypy torchcross``) found: each fails on the code before the fix."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from torchcross.learners.functional import adapt_backbone_and_head
from torchcross.learners.inner_optimizers import SGD
from torchcross.protocol.config import import_plugin
from torchcross.tasks.task import TaskDescription


def test_plugins_work_without_sys_flags_safe_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.flags.safe_path`` (``python -P``) is new in Python 3.11: on 3.10 it raised AttributeError."""
    (tmp_path / "stray_methods_310.py").write_text("VALUE = 1\n", encoding="utf-8")
    flags = {k: getattr(sys.flags, k) for k in dir(sys.flags) if not k.startswith("_")}
    for name in ("safe_path", "count", "index"):
        flags.pop(name, None)
    monkeypatch.setattr(sys, "flags", types.SimpleNamespace(**flags))  # Python 3.10's flags
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # as `python script.py` from here puts it
    with pytest.raises(ImportError, match=r"'stray_methods_310' is in the current directory"):
        import_plugin("stray_methods_310")
    assert "stray_methods_310" not in sys.modules


def test_adapt_backbone_and_head_calls_features_positionally() -> None:
    """``features`` is ``(params, x) -> features``: its second parameter may have any name."""
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"})
    params = {"backbone.w": torch.eye(2), "head.weight": torch.zeros(1, 2), "head.bias": torch.zeros(1)}
    x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1], [0]])

    def features(p: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return inputs @ p["backbone.w"]

    opt = SGD(1.0)
    adapted = adapt_backbone_and_head(
        features, params, (x, y), d, opt, 2, backbone=["backbone.w"], zero_head=True, differentiable=False
    )
    torch.testing.assert_close(adapted["head.weight"], torch.tensor([[0.4689, -0.4689]]), atol=1e-4, rtol=0)
