"""Metrics against scikit-learn on fixed inputs, degenerate cases and error paths."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error, roc_auc_score

from torchcross.evaluation.metrics import (
    METRIC_NAMES,
    ORDINAL_METRIC_NAMES,
    accuracy,
    auroc,
    compute_metrics,
    ordinal_mae,
    quadratic_weighted_kappa,
)
from torchcross.nn.kinds import loss
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c", 3: "d"}, "mc")
ORD = TaskDescription(
    "ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "moderate", 8: "severe", 10: "max"}, "ord"
)
BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "neg", 1: "pos"}, "bin")
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml")

# torchmetrics accumulates ROC curves in float32 (its sample weights are float32), so AUROC matches
# scikit-learn's float64 value to float32 precision; accuracies are exact fractions.
TOL = 1e-6


def _softmax(x: np.ndarray) -> np.ndarray:
    # torch's softmax, so that exactly tied probabilities stay tied (a numpy softmax can differ in
    # the last bit, which breaks ties differently); the AUROC reference itself is scikit-learn's
    return torch.softmax(torch.from_numpy(x), dim=-1).numpy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fixed(seed: int, n: int, width: int, *, ties: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    return np.round(x) if ties else x  # rounding creates many tied scores


def _balanced_keys(keys: tuple[int, ...], n_per: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.asarray(keys), n_per))


@pytest.mark.parametrize("ties", [False, True])
def test_multiclass_against_sklearn(ties: bool) -> None:
    y = _balanced_keys(MC.class_keys, 10, 0)
    logits = _fixed(1, len(y), 4, ties=ties)
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y)
    expected = roc_auc_score(y, _softmax(logits), multi_class="ovr", average="macro")
    assert auroc(t_logits, t_y, MC) == pytest.approx(expected, abs=TOL)
    assert accuracy(t_logits, t_y, MC) == pytest.approx(accuracy_score(y, logits.argmax(1)), abs=TOL)


@pytest.mark.parametrize("ties", [False, True])
def test_ordinal_against_sklearn_with_gapped_keys(ties: bool) -> None:
    keys = ORD.class_keys
    y = _balanced_keys(keys, 8, 2)
    logits = _fixed(3, len(y), len(keys), ties=ties)
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y)
    # sklearn maps the keys itself: probability column j belongs to the j-th smallest key
    expected = roc_auc_score(y, _softmax(logits), multi_class="ovr", average="macro", labels=list(keys))
    assert auroc(t_logits, t_y, ORD) == pytest.approx(expected, abs=TOL)
    predicted_keys = np.asarray(keys)[logits.argmax(1)]
    assert accuracy(t_logits, t_y, ORD) == pytest.approx(accuracy_score(y, predicted_keys), abs=TOL)


@pytest.mark.parametrize("ties", [False, True])
def test_ordinal_mae_and_qwk_against_sklearn(ties: bool) -> None:
    keys = ORD.class_keys  # gapped keys 1, 4, 6, 8, 10: the metrics work on the indices 0..4
    y = _balanced_keys(keys, 8, 19)
    logits = _fixed(20, len(y), len(keys), ties=ties)
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y)
    index = np.searchsorted(np.asarray(keys), y)
    expected_level = _softmax(logits) @ np.arange(len(keys))
    assert ordinal_mae(t_logits, t_y, ORD) == pytest.approx(
        mean_absolute_error(index, expected_level), abs=1e-12
    )
    qwk = cohen_kappa_score(index, logits.argmax(1), weights="quadratic", labels=list(range(len(keys))))
    assert quadratic_weighted_kappa(t_logits, t_y, ORD) == pytest.approx(qwk, abs=1e-12)
    probs = torch.softmax(t_logits, -1)
    assert ordinal_mae(probs, t_y, ORD, from_logits=False) == pytest.approx(ordinal_mae(t_logits, t_y, ORD))


def test_qwk_counts_absent_classes_and_is_nan_without_spread() -> None:
    # class index 4 ("max") is neither a label nor a prediction: it still counts in the weights
    y = np.array([1, 4, 6, 8, 1, 4, 6, 8])
    logits = np.eye(5)[[0, 1, 3, 3, 1, 1, 2, 0]] * 3.0
    qwk = cohen_kappa_score(
        np.searchsorted(np.asarray(ORD.class_keys), y), logits.argmax(1), weights="quadratic", labels=range(5)
    )
    assert quadratic_weighted_kappa(torch.from_numpy(logits), torch.from_numpy(y), ORD) == pytest.approx(qwk)
    perfect = torch.eye(5) * 3
    assert quadratic_weighted_kappa(perfect, torch.tensor(ORD.class_keys), ORD) == 1.0
    one_class = torch.zeros(4, 5)
    one_class[:, 2] = 1.0
    assert math.isnan(quadratic_weighted_kappa(one_class, torch.full((4,), 6), ORD))
    assert ordinal_mae(one_class * 50, torch.full((4,), 6), ORD) == pytest.approx(0.0, abs=1e-12)


def test_ordinal_metrics_of_non_finite_scores_are_nan() -> None:
    logits = torch.zeros(2, 5)
    logits[1, 3] = math.nan
    assert math.isnan(ordinal_mae(logits, torch.tensor([1, 4]), ORD))
    assert math.isnan(quadratic_weighted_kappa(logits, torch.tensor([1, 4]), ORD))


@pytest.mark.parametrize("ties", [False, True])
def test_binary_against_sklearn(ties: bool) -> None:
    y = _balanced_keys((0, 1), 15, 4)
    logits = _fixed(5, len(y), 1, ties=ties)
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y[:, None])
    assert auroc(t_logits, t_y, BIN) == pytest.approx(roc_auc_score(y, logits[:, 0]), abs=TOL)
    expected_acc = accuracy_score(y, (_sigmoid(logits[:, 0]) > 0.5).astype(int))
    assert accuracy(t_logits, t_y, BIN) == pytest.approx(expected_acc, abs=TOL)


@pytest.mark.parametrize("ties", [False, True])
def test_multilabel_against_sklearn(ties: bool) -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, size=(40, 3))
    logits = _fixed(7, 40, 3, ties=ties)
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y)
    assert auroc(t_logits, t_y, ML) == pytest.approx(roc_auc_score(y, logits, average="macro"), abs=TOL)
    # micro accuracy: fraction of correct (example, label) entries, not exact match
    expected_acc = accuracy_score(y.ravel(), (_sigmoid(logits) > 0.5).astype(int).ravel())
    assert accuracy(t_logits, t_y, ML) == pytest.approx(expected_acc, abs=TOL)
    assert expected_acc != accuracy_score(y, (_sigmoid(logits) > 0.5).astype(int))  # differs from exact match


def test_probability_inputs_give_the_same_values() -> None:
    y = _balanced_keys(MC.class_keys, 5, 8)
    logits = torch.from_numpy(_fixed(9, len(y), 4))
    t_y = torch.from_numpy(y)
    probs = torch.softmax(logits, -1)
    assert auroc(probs, t_y, MC, from_logits=False) == auroc(logits, t_y, MC)
    assert accuracy(probs, t_y, MC, from_logits=False) == accuracy(logits, t_y, MC)
    ml_y = torch.from_numpy(np.random.default_rng(1).integers(0, 2, size=(20, 3)))
    ml_logits = torch.from_numpy(_fixed(2, 20, 3))
    assert accuracy(torch.sigmoid(ml_logits), ml_y, ML, from_logits=False) == accuracy(ml_logits, ml_y, ML)


def test_float32_and_float64_agree() -> None:
    y = torch.from_numpy(_balanced_keys(ORD.class_keys, 6, 10))
    logits = torch.from_numpy(_fixed(11, len(y), 5))
    assert auroc(logits.float(), y, ORD) == pytest.approx(auroc(logits, y, ORD), abs=1e-6)


@given(seed=st.integers(0, 2**31 - 1), n_per=st.integers(1, 6))
def test_multiclass_auroc_property(seed: int, n_per: int) -> None:
    y = _balanced_keys(MC.class_keys, n_per, seed)
    logits = _fixed(seed + 1, len(y), 4, ties=seed % 2 == 0)
    expected = roc_auc_score(y, _softmax(logits), multi_class="ovr", average="macro")
    assert auroc(torch.from_numpy(logits), torch.from_numpy(y), MC) == pytest.approx(expected, abs=TOL)


# --- degenerate inputs -----------------------------------------------------------------------


def test_absent_class_is_ignored_or_nan() -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])  # class 3 absent
    logits = _fixed(12, len(y), 4)
    probs = _softmax(logits)
    one_hot = np.eye(4, dtype=int)[y]
    expected = roc_auc_score(one_hot[:, :3], probs[:, :3], average="macro")  # OvR over present classes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = auroc(torch.from_numpy(logits), torch.from_numpy(y), MC)
        assert got == pytest.approx(expected, abs=TOL)
        assert math.isnan(auroc(torch.from_numpy(logits), torch.from_numpy(y), MC, undefined="nan"))


def test_multilabel_constant_label_is_ignored_or_nan() -> None:
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, size=(12, 3))
    y[:, 1] = 1  # label 1 has no negatives
    logits = _fixed(14, 12, 3)
    expected = roc_auc_score(y[:, [0, 2]], logits[:, [0, 2]], average="macro")
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y)
    assert auroc(t_logits, t_y, ML) == pytest.approx(expected, abs=TOL)
    assert math.isnan(auroc(t_logits, t_y, ML, undefined="nan"))


def test_multilabel_with_one_defined_label() -> None:
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])  # only label 0 has both values
    logits = _fixed(18, 4, 3)
    expected = roc_auc_score(y[:, 0], logits[:, 0])
    assert auroc(torch.from_numpy(logits), torch.from_numpy(y), ML) == pytest.approx(expected, abs=TOL)


def test_single_class_binary_is_nan() -> None:
    logits = torch.randn(5, 1, generator=torch.Generator().manual_seed(0))
    assert math.isnan(auroc(logits, torch.ones(5, 1, dtype=torch.long), BIN))
    assert math.isnan(auroc(logits, torch.zeros(5, 1, dtype=torch.long), BIN, undefined="ignore"))
    assert accuracy(torch.ones(5, 1), torch.ones(5, 1, dtype=torch.long), BIN) == 1.0
    assert math.isnan(auroc(torch.zeros(1, 4), torch.tensor([2]), MC))


# --- compute_metrics, errors, import cost ----------------------------------------------------


@pytest.mark.parametrize("desc", [MC, ORD, BIN, ML], ids=["mc", "ord", "bin", "ml"])
def test_compute_metrics(desc: TaskDescription) -> None:
    n, width = 20, (1 if desc is BIN else desc.num_classes)
    logits = torch.from_numpy(_fixed(15, n, width))
    if desc in (BIN, ML):
        labels = torch.from_numpy(np.random.default_rng(16).integers(0, 2, size=(n, width)))
    else:
        labels = torch.from_numpy(_balanced_keys(desc.class_keys, n // desc.num_classes, 17))
    logits.requires_grad_(True)
    out = compute_metrics(logits, labels, desc)
    ordinal = desc is ORD
    assert tuple(out) == METRIC_NAMES + (ORDINAL_METRIC_NAMES if ordinal else ())
    if ordinal:
        assert out["mae"] == ordinal_mae(logits, labels, desc)
        assert out["qwk"] == quadratic_weighted_kappa(logits, labels, desc)
    assert all(isinstance(v, float) for v in out.values())
    assert out["auroc"] == auroc(logits, labels, desc)
    assert out["accuracy"] == accuracy(logits, labels, desc)
    assert out["loss"] == pytest.approx(float(loss(logits.detach(), labels, desc)))
    assert logits.grad is None


def test_error_paths() -> None:
    logits = torch.zeros(4, 4)
    labels = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="undefined must be one of"):
        auroc(logits, labels, MC, undefined="skip")
    with pytest.raises(ValueError, match=r"must have shape \(N, 4\)"):
        auroc(torch.zeros(4, 3), labels, MC)
    with pytest.raises(ValueError, match="4 rows of scores but 3 labels"):
        accuracy(logits, labels[:3], MC)
    with pytest.raises(ValueError, match=r"N = 0"):
        auroc(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), MC)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        auroc(logits - 1, labels, MC, from_logits=False)
    with pytest.raises(ValueError, match="must be 0/1"):
        auroc(torch.zeros(2, 3), torch.tensor([[0, 2, 1], [1, 0, 0]]), ML)
    with pytest.raises(ValueError, match="outside class keys"):
        accuracy(torch.zeros(2, 5), torch.tensor([1, 2]), ORD)
    with pytest.raises(TypeError, match="floating-point"):
        auroc(torch.zeros(4, 4, dtype=torch.long), labels, MC)
    with pytest.raises(ValueError, match="need an ORDINAL_REGRESSION task; task 'mc' is MULTICLASS"):
        ordinal_mae(logits, labels, MC)
    with pytest.raises(ValueError, match="need an ORDINAL_REGRESSION task; task 'bin' is BINARY"):
        quadratic_weighted_kappa(torch.zeros(2, 1), torch.tensor([[0], [1]]), BIN)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        ordinal_mae(torch.full((2, 5), 2.0), torch.tensor([1, 4]), ORD, from_logits=False)
    with pytest.raises(ValueError, match="outside class keys"):
        quadratic_weighted_kappa(torch.zeros(2, 5), torch.tensor([1, 2]), ORD)


@pytest.mark.slow
def test_import_is_lazy_about_torchmetrics() -> None:
    code = "import sys, torchcross.evaluation.metrics, torchcross.nn; print('torchmetrics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
