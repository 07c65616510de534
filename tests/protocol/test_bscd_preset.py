"""The BSCD-FSL protocol as a preset: ``[evaluation] preset = "bscd-fsl"`` sets its keys, ``n_way`` shapes
the episodes, fixed episode sets are pure in seed and shot, and evaluation reports accuracy with a 95%
interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchcross.data.sources import TensorTaskSource
from torchcross.datasets import BSCD_FSL_PROTOCOL, BSCDFSL, bscd_fsl_episodes, write_synthetic_bscd_fsl
from torchcross.evaluation.episodic import evaluate
from torchcross.protocol.config import EVALUATION_PRESETS, config_from_dict, config_to_dict
from torchcross.protocol.data import draw_episodes
from torchcross.protocol.fingerprint import EPISODE_READS, RESULT_READS, fingerprint_settings
from torchcross.tasks.task import TaskDescription

DATA = {"root": "data", "targets": ["eurosat"]}
SMALL_CLASSES = {**DATA, "min_class_size": 0}


def _raw(**evaluation: object) -> dict[str, object]:
    return {"data": DATA, "evaluation": dict(evaluation), "run": {"out_dir": "out"}}


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory: pytest.TempPathFactory) -> BSCDFSL:
    root = write_synthetic_bscd_fsl(tmp_path_factory.mktemp("bscd"), images_per_class=20, image_size=8)
    return BSCDFSL(root, "eurosat", image_size=8)


def test_the_preset_sets_the_benchmark_keys() -> None:
    ev = config_from_dict(_raw(preset="bscd-fsl")).evaluation
    assert (ev.n_way, ev.shots, ev.n_query, ev.n_episodes, ev.metric) == (5, (5, 20, 50), 15, 600, "accuracy")
    assert EVALUATION_PRESETS["bscd-fsl"] == BSCD_FSL_PROTOCOL
    assert config_from_dict(_raw(preset="bscd-fsl")).shot_counts == (5, 20, 50)
    # the same values are allowed (a written-out config reads back), others are an error naming both
    written = config_to_dict(config_from_dict(_raw(preset="bscd-fsl")))
    assert config_from_dict(written).evaluation == ev
    assert config_from_dict(_raw(preset="bscd-fsl", shots=[50, 5, 20], n_way=5)).evaluation == ev
    with pytest.raises(
        ValueError, match=r"\[evaluation\] preset = 'bscd-fsl' sets n_way = 5, .*remove n_query = 10"
    ):
        config_from_dict(_raw(preset="bscd-fsl", n_query=10))
    with pytest.raises(ValueError, match=r"preset"):
        config_from_dict(_raw(preset="bscd"))


def test_fingerprints_see_the_values_not_the_preset_and_unset_keys_change_nothing() -> None:
    preset = config_from_dict(_raw(preset="bscd-fsl"))
    explicit = config_from_dict(
        _raw(n_way=5, shots=[5, 20, 50], n_query=15, n_episodes=600, metric="accuracy")
    )
    assert fingerprint_settings(preset, RESULT_READS) == fingerprint_settings(explicit, RESULT_READS)
    plain = fingerprint_settings(config_from_dict(_raw()), EPISODE_READS, RESULT_READS)["evaluation"]
    assert not {"n_way", "metric", "preset"} & set(plain)
    assert fingerprint_settings(preset, EPISODE_READS)["evaluation"]["n_way"] == 5
    assert "metric" not in fingerprint_settings(preset, RESULT_READS)["evaluation"]  # display only


def test_fixed_episodes_are_five_way_fifteen_query_and_pure_in_seed_and_shot(eurosat: BSCDFSL) -> None:
    episodes = bscd_fsl_episodes(eurosat, 5)
    assert len(episodes) == 600
    first = episodes.episodes[0]
    assert len(first.classes) == 5
    assert len(first.support) == 25
    assert len(first.query) == 75
    assert np.bincount(first.query_labels, minlength=5).tolist() == [15] * 5
    assert len({e.classes for e in episodes.episodes}) > 1  # classes drawn anew per episode
    again = bscd_fsl_episodes(eurosat, 5)
    assert episodes.first_difference(again) is None
    assert bscd_fsl_episodes(eurosat, 5, seed=1).first_difference(episodes) is not None
    small = bscd_fsl_episodes(eurosat, 2, n_episodes=600)
    assert small.first_difference(episodes) is not None
    assert bscd_fsl_episodes(eurosat, 2).first_difference(small) is None


def test_the_protocol_draws_n_way_episodes_for_multiclass_tasks_only(eurosat: BSCDFSL) -> None:
    config = config_from_dict({**_raw(n_way=3, n_shot=2, n_query=4), "data": SMALL_CLASSES})
    episodes = draw_episodes(config, eurosat, 5, 0, print, "test")
    assert {len(e.classes) for e in episodes.episodes} == {3}
    unset = config_from_dict({**_raw(n_shot=2, n_query=4), "data": SMALL_CLASSES})
    assert {len(e.classes) for e in draw_episodes(unset, eurosat, 2, 0, print, "t").episodes} == {10}
    binary = TensorTaskSource(
        torch.randn(40, 2),
        torch.arange(40) % 2,
        TaskDescription("BINARY_CLASSIFICATION", {0: "a", 1: "b"}, "b"),
    )
    assert {len(e.classes) for e in draw_episodes(config, binary, 2, 0, print, "t").episodes} == {2}


def _nearest_centroid(task):
    (xs, ys), (xq, _) = task.support, task.query
    k = int(ys.max()) + 1
    centroids = torch.stack([xs[ys == c].flatten(1).mean(0) for c in range(k)])
    return -torch.cdist(xq.flatten(1), centroids)


def test_evaluating_a_learner_reports_accuracy_with_a_95_percent_interval(eurosat: BSCDFSL) -> None:
    episodes = bscd_fsl_episodes(eurosat, 5, n_episodes=20)
    result = evaluate(_nearest_centroid, episodes.as_dataset(eurosat), method="nearest centroid")
    acc = result.summary()["accuracy"]
    assert acc.n == 20
    assert acc.confidence == 0.95
    assert acc.ci_low <= acc.mean <= acc.ci_high
    assert not math.isnan(acc.half_width)
    assert all(r["n_classes"] == 5 for r in result.records)


def test_a_run_with_n_way_and_the_accuracy_headline(tmp_path) -> None:
    from torchcross.cli.demo_data import write_demo_medimeta
    from torchcross.evaluation.results import ResultsTable
    from torchcross.protocol import run_protocol

    root = write_demo_medimeta(tmp_path / "data", size=16)
    raw = {
        "data": {"root": str(root), "targets": ["digits_scan_a/digit"], "min_class_size": 0},
        "evaluation": {
            "methods": ["linear-probe"],
            "n_way": 3,
            "n_shot": 2,
            "n_query": 3,
            "n_episodes": 3,
            "metric": "accuracy",
        },
        "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
        "finetune": {"steps": 2},
        "run": {"out_dir": str(tmp_path / "out"), "plot": True, "num_threads": 1},
    }
    run_protocol(config_from_dict(raw), progress=False, log=None)
    out = tmp_path / "out"
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "auroc.png").exists()
    header = (out / "results.md").read_text().splitlines()[0]
    assert header.index("accuracy") < header.index("AUROC")
    episodes = ResultsTable.read_csv(out / "episodes.csv")
    assert set(episodes.column("n_classes")) == {3}


def test_an_episode_the_sampler_refuses_names_the_config_keys_behind_it(eurosat: BSCDFSL) -> None:
    # eurosat's synthetic classes have 20 images each: [data] min_class_size = 50 leaves none of them
    config = config_from_dict(
        {**_raw(n_way=5, n_shot=2, n_query=4), "data": {**SMALL_CLASSES, "min_class_size": 50}}
    )
    with pytest.raises(
        ValueError,
        match=r"^target eurosat: .*0 usable classes.*\(in the config: filter_classes_min_samples is \[data\] "
        r"min_class_size = 50, n_way is \[evaluation\] n_way",
    ):
        draw_episodes(config, eurosat, 2, 0, print, "target eurosat")
