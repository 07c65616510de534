"""``[evaluation] batch_size`` with full fine-tuning: the protocol's episodes fine-tuned together (the
batched path forced on the CPU) score as one at a time; and ``benchmarks/protocol.py --quick`` runs."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.learners.finetuner import FineTuner
from torchcross.protocol import baselines, run_protocol
from torchcross.protocol.config import config_from_dict

ROOT = Path(__file__).resolve().parents[2]


def _config(root: Path, out: Path, batch_size: int):
    return config_from_dict(
        {
            "data": {"root": str(root), "targets": ["digits_scan_a/even digit"], "min_class_size": 0},
            "evaluation": {"n_episodes": 4, "methods": ["IM-PT"], "batch_size": batch_size},
            "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
            "augmentation": {"enabled": False},
            # batch statistics: the paper's "support" policy carries Adam's amplified rounding of the
            # zero gradient of Conv4's biases to the query logits (docs/learners.md)
            "finetune": {"steps": 3, "freeze_backbone": False, "batch_norm": "batch"},
            "run": {"out_dir": str(out), "plot": False, "num_threads": 1},
        }
    )


def test_evaluation_batch_size_fine_tunes_episodes_together_with_the_same_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_demo_medimeta(tmp_path / "data", size=16)
    calls: list[int] = []
    real = FineTuner._predict_stacked

    def counted(self, tasks, heads):
        calls.append(len(tasks))
        return real(self, tasks, heads)

    # on the CPU batching="auto" fine-tunes episode by episode (faster there): force the batched path
    monkeypatch.setattr(baselines, "FineTuner", functools.partial(FineTuner, batching="vmap"))
    monkeypatch.setattr(FineTuner, "_predict_stacked", counted)
    one = run_protocol(_config(root, tmp_path / "one", 1), progress=False, log=None).episodes.to_records()
    assert calls == []
    four = run_protocol(_config(root, tmp_path / "four", 4), progress=False, log=None).episodes.to_records()
    assert max(calls, default=0) > 1
    assert len(one) == len(four) == 4
    for a, b in zip(one, four):
        assert (a["method"], a["episode"]) == (b["method"], b["episode"])
        for key in ("auroc", "accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_the_protocol_benchmark_runs_in_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("protocol_bench", ROOT / "benchmarks/protocol.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--profile", "--json", str(tmp_path / "report.json")])
    assert json.loads((tmp_path / "report.json").read_text())["settings"]["episodes"] == 6
    rows = {r["learner"]: r for r in report["evaluation"]}
    assert {"finetune", "finetune-batched", "probe-1", "maml"} <= set(rows)
    assert report["auroc_differences"]["finetune-batched"] <= 1e-6  # float64 logits
    assert report["finetune_batched_speedup"] > 0
    profile = report["profile_seconds"]  # --profile: operator time by group, both fine-tuning rows
    assert set(profile) == {"finetune", "finetune-batched"}
    assert profile["finetune"]["convolution"] > 0
    assert sum(profile["finetune-batched"].values()) > 0
