"""Per-task heads: width, zero/kaiming initialisation, module and functional forms."""

from __future__ import annotations

import math

import pytest
import torch

from torchcross.nn.heads import HEAD_INITS, head_forward, init_head_params, make_head
from torchcross.nn.kinds import num_outputs, probabilities
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c", 3: "d"}, "mc")
ORD = TaskDescription("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate"}, "ord")
BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "neg", 1: "pos"}, "bin")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z", 3: "w", 4: "v"}, "ml")
ALL = [MC, ORD, BIN, ML]
IDS = ["mc", "ord", "bin", "ml"]


@pytest.mark.parametrize(("desc", "width"), [(MC, 4), (ORD, 3), (BIN, 1), (ML, 5)], ids=IDS)
@pytest.mark.parametrize("init", HEAD_INITS)
def test_shapes(desc: TaskDescription, width: int, init: str) -> None:
    params = init_head_params(7, desc, init, generator=torch.Generator().manual_seed(0))
    assert params["weight"].shape == (width, 7)
    assert params["bias"].shape == (width,)
    assert head_forward(torch.randn(2, 7), params).shape == (2, width)
    assert make_head(7, desc, init).out_features == width == num_outputs(desc)


@pytest.mark.parametrize("desc", ALL, ids=IDS)
def test_zero_head_gives_uniform_probabilities(desc: TaskDescription) -> None:
    params = init_head_params(6, desc)
    assert not params["weight"].any()
    assert not params["bias"].any()
    feats = torch.randn(4, 6, generator=torch.Generator().manual_seed(3)) * 100
    probs = probabilities(head_forward(feats, params), desc)
    expected = (
        1.0 / desc.num_classes
        if desc.task_target.name in ("MULTICLASS_CLASSIFICATION", "ORDINAL_REGRESSION")
        else 0.5
    )
    torch.testing.assert_close(probs, torch.full_like(probs, expected))


def test_kaiming_is_reproducible_with_a_generator() -> None:
    a = init_head_params(16, MC, "kaiming", generator=torch.Generator().manual_seed(42))
    b = init_head_params(16, MC, "kaiming", generator=torch.Generator().manual_seed(42))
    c = init_head_params(16, MC, "kaiming", generator=torch.Generator().manual_seed(43))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a["weight"], c["weight"])
    head = make_head(16, MC, "kaiming", generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(head.weight.detach(), a["weight"], rtol=0, atol=0)
    torch.testing.assert_close(head.bias.detach(), a["bias"], rtol=0, atol=0)


def test_kaiming_matches_nn_linear_default_bounds() -> None:
    fan_in = 25
    params = init_head_params(fan_in, ML, "kaiming", generator=torch.Generator().manual_seed(0))
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform with a=sqrt(5) and nn.Linear's bias bound
    assert params["weight"].abs().max() <= bound
    assert params["bias"].abs().max() <= bound
    assert params["weight"].std() > bound / 4  # not degenerate


def test_dtype_device_and_grad_flags() -> None:
    params = init_head_params(3, BIN, "kaiming", dtype=torch.float64, device="cpu")
    assert params["weight"].dtype == torch.float64
    assert params["weight"].device.type == "cpu"
    assert not params["weight"].requires_grad
    head = make_head(3, BIN, dtype=torch.float64)
    assert isinstance(head.weight, torch.nn.Parameter)
    assert head.weight.requires_grad
    assert head.weight.dtype == torch.float64


def test_make_head_and_head_forward_agree() -> None:
    head = make_head(5, ORD, "kaiming", generator=torch.Generator().manual_seed(9))
    feats = torch.randn(3, 5)
    params = dict(head.named_parameters())
    torch.testing.assert_close(head_forward(feats, params), head(feats))
    # a head without bias is allowed by head_forward
    torch.testing.assert_close(head_forward(feats, {"weight": head.weight}), feats @ head.weight.T)


def test_error_paths() -> None:
    with pytest.raises(ValueError, match=r"init must be one of \('zero', 'kaiming'\), got 'xavier'"):
        init_head_params(4, MC, "xavier")
    with pytest.raises(ValueError, match=r"init must be one of .* got 'Zero'"):
        make_head(4, MC, "Zero")
    with pytest.raises(
        ValueError, match=r"num_features must be >= 1 \(the feature width\), got num_features=0"
    ):
        init_head_params(0, MC)
    with pytest.raises(TypeError, match=r"num_features must be an int, got float: 2\.5"):
        init_head_params(2.5, MC)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="REGRESSION has no head"):
        init_head_params(4, TaskDescription("REGRESSION", {0: "y", 1: "z"}))
