"""``[run] precision`` (bf16 autocast) and ``[run] channels_last``: end to end on the CPU against float32."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data.embeddings import load_embeddings
from torchcross.learners.precision import check_precision, mixed_precision, to_channels_last
from torchcross.protocol import check_protocol, run_protocol
from torchcross.protocol.config import ProtocolConfig, config_from_dict
from torchcross.protocol.fingerprint import COMPUTE_READS, EVALUATION_READS, fingerprint_settings
from torchcross.protocol.training import CheckpointMismatchError

METHODS = ["IM-PT", "mm-PT", "mm-MAML", "supervised", "linear-probe"]
# Tolerances against float32. bf16 keeps 8 bits of mantissa: a tiny model's training losses move by ~1e-2
# relative, the frozen features by a few 1e-2 of their scale, and the mean AUROC of the trained methods
# over 6 episodes by up to a few hundredths (ranks of near-tied scores flip). The linear probe on random
# features is at chance, its AUROC noise: its features are compared instead.
BF16_LOSS_RTOL = 0.05
BF16_FEATURE_TOL = 0.05  # of the features' largest magnitude
BF16_AUROC_ATOL = 0.05
# channels-last changes float32 summation order only: losses and features agree to ~1e-6; the AUROC of
# second-order mm-MAML (BatchNorm amplifies rounding) by a thousandth
LAYOUT_RTOL = 1e-5
LAYOUT_AUROC_ATOL = 0.01


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "data", size=16)


def _config(root: Path, out: Path, **run: Any) -> ProtocolConfig:
    return config_from_dict(
        {
            "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
            "evaluation": {"n_episodes": 6, "methods": METHODS},
            "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
            "augmentation": {"enabled": False},
            "pretrain": {"steps": 20, "batch_size": 16, "lr": 0.01, "patience": 0},
            "maml": {"steps": 3, "meta_batch_size": 2, "inner_steps": 2, "n_query": 2, "patience": 0},
            "supervised": {"steps": 20, "batch_size": 16, "lr": 0.01, "patience": 0, "bootstrap": 20},
            "finetune": {"steps": 8, "lr": 0.01},  # the whole backbone fine-tuned per episode
            "run": {"out_dir": str(out), "plot": False, "num_threads": 1, **run},
        }
    )


def _results(config: ProtocolConfig) -> tuple[dict[str, float], dict[str, list[float]], np.ndarray]:
    """``({method: mean AUROC}, {method: training losses}, linear-probe features)`` of a run."""
    result = run_protocol(config, progress=False, log=None)
    scores = {r["method"]: r["auroc_mean"] for r in result.summary if r["method"] != "linear-probe"}
    losses = {}
    for path in sorted((Path(config.run.out_dir) / "curves").rglob("*.csv")):
        with path.open() as f:
            losses[path.stem] = [float(row["loss"]) for row in csv.DictReader(f)]
    (cached,) = (Path(config.run.out_dir) / "embeddings").glob("*.safetensors")
    return scores, losses, np.array(load_embeddings(cached).features)


@pytest.fixture(scope="module")
def fp32(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _results(_config(demo_root, tmp_path_factory.mktemp("fp32")))


def test_bf16_runs_every_method_on_the_cpu_close_to_fp32(demo_root: Path, tmp_path: Path, fp32: Any) -> None:
    scores, losses, features = _results(_config(demo_root, tmp_path / "bf16", precision="bf16"))
    ref_scores, ref_losses, ref_features = fp32
    assert set(scores) == set(ref_scores) == {"scratch", "mm-PT", "mm-MAML", "supervised"}
    for method, score in scores.items():
        assert score == pytest.approx(ref_scores[method], abs=BF16_AUROC_ATOL), method
    assert set(losses) == set(ref_losses) == {"mm-PT", "mm-MAML"}
    for method in losses:
        assert losses[method] == pytest.approx(ref_losses[method], rel=BF16_LOSS_RTOL), method
    assert losses["mm-PT"] != ref_losses["mm-PT"]  # the forward passes did run in bf16
    scale = np.abs(ref_features).max()
    assert np.abs(features - ref_features).max() <= BF16_FEATURE_TOL * scale
    assert not np.array_equal(features, ref_features)


def test_channels_last_gives_the_default_layouts_results(demo_root: Path, tmp_path: Path, fp32: Any) -> None:
    scores, losses, features = _results(_config(demo_root, tmp_path / "cl", channels_last=True))
    ref_scores, ref_losses, ref_features = fp32
    assert scores == pytest.approx(ref_scores, abs=LAYOUT_AUROC_ATOL)
    for method in losses:
        assert losses[method] == pytest.approx(ref_losses[method], rel=LAYOUT_RTOL), method
    assert np.abs(features - ref_features).max() <= LAYOUT_RTOL * np.abs(ref_features).max()


def test_the_run_trains_under_autocast_with_float32_losses_and_channels_last_weights(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchcross.learners.multitask import MultiTaskPretrainer

    seen: list[tuple[bool, torch.dtype, bool]] = []
    loss = MultiTaskPretrainer.loss

    def spied(self: Any, batch: Any, description: Any) -> torch.Tensor:
        value = loss(self, batch, description)
        weight = [p for p in self.backbone.parameters() if p.dim() == 4][-1]  # 8 input channels
        layout = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        seen.append((torch.is_autocast_enabled("cpu"), value.dtype, layout))
        return value

    monkeypatch.setattr(MultiTaskPretrainer, "loss", spied)
    config = _config(demo_root, tmp_path / "out", precision="bf16", channels_last=True)
    run_protocol(_only(config, "mm-PT"), log=None)
    assert seen
    assert all(s == (True, torch.float32, True) for s in seen)
    assert not torch.is_autocast_enabled("cpu")  # left as it was


def _only(config: ProtocolConfig, method: str) -> ProtocolConfig:
    return dataclasses.replace(config, evaluation=dataclasses.replace(config.evaluation, methods=(method,)))


def test_precision_and_layout_enter_the_fingerprints_and_their_defaults_keep_them(
    demo_root: Path, tmp_path: Path
) -> None:
    default = _config(demo_root, tmp_path)
    assert "run" not in fingerprint_settings(default, EVALUATION_READS)  # earlier fingerprints stay
    assert "run" not in fingerprint_settings(default, COMPUTE_READS)
    bf16 = fingerprint_settings(_config(demo_root, tmp_path, precision="bf16"), EVALUATION_READS)
    assert bf16["run"] == {"precision": "bf16"}
    layout = fingerprint_settings(_config(demo_root, tmp_path, channels_last=True), COMPUTE_READS)
    assert layout["run"] == {"channels_last": True}


def test_a_checkpoint_of_another_precision_is_refused_as_any_changed_training_setting(
    demo_root: Path, tmp_path: Path
) -> None:
    run_protocol(_only(_config(demo_root, tmp_path / "out"), "mm-PT"), log=None)
    with pytest.raises(CheckpointMismatchError, match=r"changed: run\.precision \(saved None, now 'bf16'\)"):
        run_protocol(_only(_config(demo_root, tmp_path / "out", precision="bf16"), "mm-PT"), log=None)


def test_bf16_on_a_gpu_without_bf16_is_refused_by_check(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    config = _config(demo_root, tmp_path / "out", precision="bf16", device="cuda")
    match = r"\[run\] precision 'bf16' on device 'cuda' \(Tesla V100\).*no native bfloat16.*precision 'fp32'"
    with pytest.raises(ValueError, match=match):
        check_protocol(config)


def test_check_precision_names_the_device_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    check_precision("bf16", "cpu")
    check_precision("fp32", "mps")
    with pytest.raises(ValueError, match=r"'bf16' on device 'mps'.*'cpu' and 'cuda'.*precision 'fp32'"):
        check_precision("bf16", "mps")
    with pytest.raises(ValueError, match=r"precision = 'float16' is not one of 'fp32', 'bf16'"):
        check_precision("float16", "cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(ValueError, match=r"'cuda:0' \(Tesla T4\).*including_emulation=False\) is False"):
        mixed_precision("bf16", "cuda:0")
    raw = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o", "precision": "fp16"}}
    with pytest.raises(ValueError, match=r"\[run\] precision = 'fp16' is not one of fp32, bf16"):
        config_from_dict(raw)


def test_mixed_precision_keeps_parameters_gradients_and_losses_in_float32() -> None:
    torch.manual_seed(0)
    model = to_channels_last(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()))
    x, y = torch.randn(2, 3, 5, 5), torch.tensor([0, 1])
    with mixed_precision("bf16", "cpu"):
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits[:, :2], y)
    loss.backward()
    assert (logits.dtype, loss.dtype) == (torch.bfloat16, torch.float32)
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        reference = torch.nn.functional.cross_entropy(model(x)[:, :2], y)
    assert float(loss.detach()) == pytest.approx(float(reference), rel=BF16_LOSS_RTOL)
    with pytest.raises(TypeError, match=r"to_channels_last takes an nn\.Module, got Tensor"):
        to_channels_last(x)  # type: ignore[type-var]
