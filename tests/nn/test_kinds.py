"""The task-kind dispatch table: widths, losses, probabilities, predictions, transforms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from torchcross.nn.heads import head_forward, init_head_params
from torchcross.nn.kinds import (
    TASK_KINDS,
    TaskKind,
    encode_labels,
    get_task_kind,
    loss,
    num_outputs,
    predictions,
    probabilities,
)
from torchcross.tasks.task import TaskDescription, TaskTarget

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c", 3: "d"}, "mc")
ORD = TaskDescription(
    "ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate", 8: "severe", 10: "max"}, "ord"
)
BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "neg", 1: "pos"}, "bin")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml")
DESCRIPTIONS = {"mc": MC, "ord": ORD, "bin": BIN, "ml": ML}


def make_batch(desc: TaskDescription, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 logits and canonical labels for ``desc``."""
    g = torch.Generator().manual_seed(seed)
    width = num_outputs(desc)
    logits = torch.randn(n, width, generator=g, dtype=torch.float64)
    if desc.task_target is TaskTarget.MULTILABEL_CLASSIFICATION:
        labels = torch.randint(0, 2, (n, width), generator=g)
    elif desc.task_target is TaskTarget.BINARY_CLASSIFICATION:
        labels = torch.randint(0, 2, (n, 1), generator=g)
    else:
        keys = torch.tensor(desc.class_keys)
        labels = keys[torch.randint(0, len(keys), (n,), generator=g)]
    return logits, labels


def test_table_covers_the_four_classification_kinds() -> None:
    assert set(TASK_KINDS) == {
        TaskTarget.MULTICLASS_CLASSIFICATION,
        TaskTarget.ORDINAL_REGRESSION,
        TaskTarget.BINARY_CLASSIFICATION,
        TaskTarget.MULTILABEL_CLASSIFICATION,
    }
    assert all(isinstance(kind, TaskKind) and kind.target is target for target, kind in TASK_KINDS.items())
    with pytest.raises(TypeError, match="does not support item assignment"):
        TASK_KINDS[TaskTarget.REGRESSION] = TASK_KINDS[TaskTarget.ORDINAL_REGRESSION]  # type: ignore[index]


def test_get_task_kind_accepts_member_name_and_description() -> None:
    kind = TASK_KINDS[TaskTarget.ORDINAL_REGRESSION]
    assert get_task_kind(TaskTarget.ORDINAL_REGRESSION) is kind
    assert get_task_kind("ordinal_regression") is kind
    assert get_task_kind(ORD) is kind


def test_get_task_kind_errors() -> None:
    with pytest.raises(ValueError, match="REGRESSION has no head"):
        get_task_kind(TaskTarget.REGRESSION)
    with pytest.raises(ValueError, match="unknown task target 'SEGMENTATION'"):
        get_task_kind("SEGMENTATION")
    with pytest.raises(TypeError, match="TaskTarget or its name"):
        get_task_kind(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "width"), [("mc", 4), ("ord", 5), ("bin", 1), ("ml", 3)])
def test_num_outputs(name: str, width: int) -> None:
    assert num_outputs(DESCRIPTIONS[name]) == width


def test_multiclass_loss_is_cross_entropy() -> None:
    logits, labels = make_batch(MC, 7)
    logp = logits.log_softmax(-1)
    expected = -logp[torch.arange(7), labels]
    torch.testing.assert_close(loss(logits, labels, MC), expected.mean())
    torch.testing.assert_close(loss(logits, labels, MC, reduction="sum"), expected.sum())
    torch.testing.assert_close(loss(logits, labels, MC, reduction="none"), expected)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(
        loss(logits, labels, MC, class_weights=w), (w[labels] * expected).sum() / w[labels].sum()
    )


def test_ordinal_loss_maps_gapped_keys_to_indices() -> None:
    logits, keys = make_batch(ORD, 9)
    index_of = {k: i for i, k in enumerate(ORD.class_keys)}
    indices = torch.tensor([index_of[int(k)] for k in keys])
    torch.testing.assert_close(loss(logits, keys, ORD), F.cross_entropy(logits, indices))
    torch.testing.assert_close(encode_labels(keys, ORD), indices)
    # (N, 1) labels are accepted like normalize_labels does
    torch.testing.assert_close(loss(logits, keys[:, None], ORD), F.cross_entropy(logits, indices))


def _manual_bce(
    logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    p = torch.sigmoid(logits)
    pw = torch.ones(logits.shape[1], dtype=logits.dtype) if pos_weight is None else pos_weight
    return -(pw * y * torch.log(p) + (1 - y) * torch.log1p(-p))


@pytest.mark.parametrize("name", ["bin", "ml"])
def test_sigmoid_kinds_use_bce_with_logits(name: str) -> None:
    desc = DESCRIPTIONS[name]
    logits, labels = make_batch(desc, 8)
    y = labels.double()
    torch.testing.assert_close(loss(logits, labels, desc), _manual_bce(logits, y).mean())
    torch.testing.assert_close(loss(logits, labels, desc, reduction="sum"), _manual_bce(logits, y).sum())
    torch.testing.assert_close(loss(logits, labels, desc, reduction="none"), _manual_bce(logits, y))
    pw = torch.linspace(0.5, 3.0, num_outputs(desc), dtype=torch.float64)
    torch.testing.assert_close(
        loss(logits, labels, desc, class_weights=pw), _manual_bce(logits, y, pw).mean()
    )


def test_binary_accepts_flat_labels() -> None:
    logits, labels = make_batch(BIN, 5)
    torch.testing.assert_close(loss(logits, labels[:, 0], BIN), loss(logits, labels, BIN))
    assert encode_labels(labels[:, 0], BIN).shape == (5, 1)


@pytest.mark.parametrize("name", list(DESCRIPTIONS))
def test_loss_gradcheck_and_gradgradcheck(name: str) -> None:
    desc = DESCRIPTIONS[name]
    logits, labels = make_batch(desc, 6)
    logits.requires_grad_(True)
    weights = torch.linspace(0.5, 2.0, num_outputs(desc), dtype=torch.float64)
    for w in (None, weights):
        assert torch.autograd.gradcheck(lambda x, w=w: loss(x, labels, desc, w), (logits,))
        assert torch.autograd.gradgradcheck(lambda x, w=w: loss(x, labels, desc, w), (logits,))


@pytest.mark.parametrize("name", list(DESCRIPTIONS))
def test_maml_style_second_order_gradient(name: str) -> None:
    """One inner SGD step with create_graph=True; the outer gradient matches finite differences."""
    desc = DESCRIPTIONS[name]
    g = torch.Generator().manual_seed(1)
    feats_s = torch.randn(6, 4, generator=g, dtype=torch.float64)
    feats_q = torch.randn(5, 4, generator=g, dtype=torch.float64)
    _, ys = make_batch(desc, 6, seed=2)
    _, yq = make_batch(desc, 5, seed=3)
    w0 = torch.randn(num_outputs(desc), 4, generator=g, dtype=torch.float64, requires_grad=True)

    def outer(w: torch.Tensor) -> torch.Tensor:
        inner = loss(feats_s @ w.T, ys, desc)
        (gw,) = torch.autograd.grad(inner, w, create_graph=True)
        return loss(feats_q @ (w - 0.5 * gw).T, yq, desc)

    assert torch.autograd.gradcheck(outer, (w0,))


@pytest.mark.parametrize("name", list(DESCRIPTIONS))
def test_loss_under_torch_func_grad_and_vmap(name: str) -> None:
    desc = DESCRIPTIONS[name]
    n_tasks, n, d = 3, 5, 4
    g = torch.Generator().manual_seed(0)
    params = init_head_params(d, desc, "kaiming", generator=g, dtype=torch.float64)
    feats = torch.randn(n_tasks, n, d, generator=g, dtype=torch.float64)
    labels = torch.stack([make_batch(desc, n, seed=s)[1] for s in range(n_tasks)])

    def task_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss(head_forward(x, p), y, desc)

    batched = vmap(grad(task_loss), in_dims=(None, 0, 0))(params, feats, labels)
    for t in range(n_tasks):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        gw, gb = torch.autograd.grad(task_loss(p, feats[t], labels[t]), [p["weight"], p["bias"]])
        torch.testing.assert_close(batched["weight"][t], gw)
        torch.testing.assert_close(batched["bias"][t], gb)

    # functional_call over an nn.Linear with the same parameters gives the same loss
    module = torch.nn.Linear(d, num_outputs(desc), dtype=torch.float64)
    out = functional_call(module, params, (feats[0],))
    torch.testing.assert_close(loss(out, labels[0], desc), task_loss(params, feats[0], labels[0]))


@pytest.mark.parametrize("name", list(DESCRIPTIONS))
def test_probabilities(name: str) -> None:
    desc = DESCRIPTIONS[name]
    logits, _ = make_batch(desc, 4)
    probs = probabilities(logits, desc)
    if get_task_kind(desc).softmax:
        torch.testing.assert_close(probs, torch.softmax(logits, -1))
        torch.testing.assert_close(probs.sum(-1), torch.ones(4, dtype=torch.float64))
    else:
        torch.testing.assert_close(probs, torch.sigmoid(logits))


def test_predictions_are_canonical_labels() -> None:
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0, 1.0], [5.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 9.0]])
    assert predictions(logits, ORD).tolist() == [4, 1, 10]
    assert predictions(logits[:, :4], MC).tolist() == [1, 0, 0]
    assert predictions(torch.tensor([[0.1], [-0.1], [0.0]]), BIN).tolist() == [[1], [0], [0]]
    assert predictions(torch.tensor([[1.0, -1.0, 2.0]]), ML).tolist() == [[1, 0, 1]]
    # predictions feed straight back into the loss
    for desc in DESCRIPTIONS.values():
        logits, _ = make_batch(desc, 5)
        assert torch.isfinite(loss(logits, predictions(logits, desc), desc))


def test_loss_error_paths() -> None:
    logits, labels = make_batch(MC, 4)
    with pytest.raises(ValueError, match="reduction must be one of"):
        loss(logits, labels, MC, reduction="average")
    with pytest.raises(ValueError, match=r"must have shape \(N, 4\).*num_outputs"):
        loss(logits[:, :3], labels, MC)
    with pytest.raises(ValueError, match=r"must have shape \(N,\)"):
        loss(logits, torch.zeros(4, 2, dtype=torch.long), MC)
    with pytest.raises(TypeError, match="integer class keys"):
        loss(logits, labels.double(), MC)
    with pytest.raises(ValueError, match="4 rows of logits but 3 labels"):
        loss(logits, labels[:3], MC)
    with pytest.raises(ValueError, match=r"class_weights .* shape \(4,\) \(one weight per class\)"):
        loss(logits, labels, MC, class_weights=torch.ones(3))
    for bad in ([0, 1, 2, 4], [0, -1, 2, 3], [0, -100, 1, 1]):  # -100 would be ignored by F.cross_entropy
        with pytest.raises(ValueError, match=r"outside class keys \[0, 1, 2, 3\]"):
            loss(logits, torch.tensor(bad), MC)
    ord_logits, _ = make_batch(ORD, 2)
    with pytest.raises(ValueError, match=r"outside class keys \[1, 4, 6, 8, 10\]"):
        loss(ord_logits, torch.tensor([1, 5]), ORD)
    with pytest.raises(ValueError, match=r"outside class keys"):
        loss(ord_logits, torch.tensor([0, 1]), ORD)
    bin_logits, _ = make_batch(BIN, 3)
    with pytest.raises(ValueError, match=r"binary labels .* \(N, 1\)"):
        loss(bin_logits, torch.zeros(3, 2, dtype=torch.long), BIN)
    with pytest.raises(ValueError, match=r"one positive weight per label"):
        loss(bin_logits, torch.zeros(3, 1, dtype=torch.long), BIN, class_weights=torch.ones(2))
    ml_logits, _ = make_batch(ML, 3)
    with pytest.raises(ValueError, match=r"multi-label labels .* \(N, 3\)"):
        loss(ml_logits, torch.zeros(3, 4, dtype=torch.long), ML)
    reg = TaskDescription("REGRESSION", {0: "y", 1: "z"})
    with pytest.raises(ValueError, match="REGRESSION has no head"):
        loss(logits, labels, reg)


def test_zero_logits_give_log_c_and_log_2() -> None:
    assert math.isclose(
        float(loss(torch.zeros(3, 5), torch.tensor([1, 4, 10]), ORD)), math.log(5), rel_tol=1e-6
    )
    assert math.isclose(
        float(loss(torch.zeros(2, 1), torch.tensor([[0], [1]]), BIN)), math.log(2), rel_tol=1e-6
    )


def test_tensor_keys_to_indices_matches_the_numpy_rule() -> None:
    from torchcross.tasks.labels import keys_to_indices

    _, keys = make_batch(ORD, 12, seed=4)
    as_tensor = keys_to_indices(keys, ORD)
    assert isinstance(as_tensor, torch.Tensor)
    assert as_tensor.tolist() == keys_to_indices(keys.numpy(), ORD).tolist()
    _, mc = make_batch(MC, 6, seed=5)
    assert torch.equal(keys_to_indices(mc, MC), mc)
    # inside vmap the mapping runs as tensor operations (the membership check needs values, so it is skipped)
    batched = vmap(lambda y: encode_labels(y, ORD))(keys.reshape(3, 4))
    assert torch.equal(batched.reshape(-1), as_tensor)
