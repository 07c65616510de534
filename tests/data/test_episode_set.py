"""Fixed evaluation episode sets: JSON round trip, checksum refusal, malformed files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from torchcross.data import TensorTaskSource
from torchcross.data.metadataset.episode_set import (
    EpisodeSet,
    FixedEpisodeMetaDataset,
    labels_checksum,
    sample_episode_set,
)
from torchcross.data.metadataset.few_shot import FewShotMetaDataset, SubTaskRandomFewShotMetaDataset
from torchcross.data.metadataset.variable import VariableWayShotMetaDataset
from torchcross.tasks.task import TaskDescription

KINDS = {
    "multiclass": TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mc", "dom"),
    "binary": TaskDescription("BINARY_CLASSIFICATION", {0: "healthy", 1: "glaucoma"}, "glaucoma", "fundus"),
    "multilabel": TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y", 2: "z"}, "ml", "cxr"),
    "ordinal": TaskDescription("ORDINAL_REGRESSION", {1: "none", 4: "mild", 6: "severe"}, "dr", "fundus"),
}


def make_source(kind: str, n: int = 150, seed: int = 0) -> TensorTaskSource:
    rng = np.random.default_rng(seed)
    d = KINDS[kind]
    if kind == "multilabel":
        labels = (rng.random((n, 3)) < 0.4).astype(np.int64)
    else:
        keys = np.array(d.class_keys)
        labels = keys[rng.permutation(np.arange(n) % len(keys))]
    return TensorTaskSource(torch.arange(n, dtype=torch.float32)[:, None], labels, d)


def _same_tasks(a, b) -> None:
    assert a.description == b.description
    for x, y in ((a.support, b.support), (a.query, b.query)):
        assert torch.equal(x[0], y[0])
        assert torch.equal(x[1], y[1])


@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_through_json(kind, tmp_path) -> None:
    src = make_source(kind)
    episodes = sample_episode_set(src, n_episodes=7, n_shot=2, n_query=3, seed=5)
    path = tmp_path / f"{kind}.json"
    episodes.save(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)  # plain, human-readable JSON: no pickle
    assert data["format"] == "torchcross.episode_set"
    assert data["version"] == 1
    assert data["description"]["task_identifier"] == KINDS[kind].task_identifier
    assert data["sampling"]["n_support_samples_per_class"] == 2
    assert data["sampling"]["seed"] == 5
    assert data["labels"]["checksum"] == labels_checksum(src.labels)
    assert len(text.splitlines()) == 7 + 10
    loaded = EpisodeSet.load(path, src)
    assert loaded.description == episodes.description
    assert dict(loaded.sampling) == dict(episodes.sampling)
    assert loaded.labels_checksum == episodes.labels_checksum
    assert len(loaded) == 7
    for a, b in zip(loaded.episodes, episodes.episodes):
        assert a.classes == b.classes
        for name in ("support", "support_labels", "query", "query_labels"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
            assert getattr(a, name).shape == getattr(b, name).shape
    # the stored episodes are the FewShotMetaDataset episodes with that seed
    reference = FewShotMetaDataset(src, None, 2, 3, 0, length=7, seed=5)
    fixed = loaded.as_dataset(src)
    assert isinstance(fixed, FixedEpisodeMetaDataset)
    assert len(fixed) == 7
    for i in range(7):
        _same_tasks(fixed[i], reference[i])
    pairs = loaded.as_dataset(src, output_indices=True)[0]
    assert [i for i, _ in pairs.support] == episodes.episodes[0].support.tolist()


def test_sub_task_and_variable_sets_round_trip(tmp_path) -> None:
    src = make_source("multiclass", n=300)
    for ds in (
        SubTaskRandomFewShotMetaDataset(src, filter_classes_min_samples=0, length=4, seed=1),
        VariableWayShotMetaDataset(src, min_ways=2, max_ways=3, length=4, seed=1),
    ):
        episodes = EpisodeSet.from_dataset(ds)
        episodes.save(tmp_path / "set.json")
        loaded = EpisodeSet.load(tmp_path / "set.json", src)
        assert loaded.sampling["rule"] == type(ds).__name__
        for i in range(4):
            _same_tasks(loaded.as_dataset(src)[i], ds[i])


def test_changed_labels_are_refused(tmp_path) -> None:
    src = make_source("binary")
    path = tmp_path / "glaucoma.json"
    sample_episode_set(src, n_episodes=3, n_shot=2, n_query=2).save(path)
    labels = src.labels.copy()
    labels[0] = 1 - labels[0]
    changed = TensorTaskSource(src.inputs, labels, src.task_description)
    with pytest.raises(
        ValueError,
        match=r"glaucoma\.json.*'glaucoma'.*stored sha256:[0-9a-f]{64}.*source sha256:[0-9a-f]{64}",
    ):
        EpisodeSet.load(path, changed)
    loaded = EpisodeSet.load(path)  # without a source: no check
    with pytest.raises(ValueError, match="do not match"):
        loaded.as_dataset(changed)
    shorter = TensorTaskSource(src.inputs[:-1], src.labels[:-1], src.task_description)
    with pytest.raises(ValueError, match="149 examples"):
        loaded.verify(shorter)


def test_labels_checksum_sees_shape_and_dtype() -> None:
    a = np.array([[0, 1], [1, 0]])
    assert labels_checksum(a) != labels_checksum(a.reshape(4))
    assert labels_checksum(a) != labels_checksum(a.astype(np.int32))
    assert labels_checksum(a.astype(">i8")) == labels_checksum(a.astype("<i8"))
    assert labels_checksum(a).startswith("sha256:")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format="something else"), "not a torchcross episode set"),
        (lambda d: d.update(version=99), "format version 99"),
        (lambda d: d.pop("description"), "malformed"),
        (lambda d: d["episodes"][0].update(support=[10_000]), "indices"),
        (lambda d: d["episodes"][0].update(query=d["episodes"][0]["support"]), "share examples"),
        (lambda d: d["episodes"][0].update(support_labels=[0]), "labels"),
        (lambda d: d.update(n_episodes=5), "n_episodes=5 but holds 2"),
        (lambda d: d["description"].update(classes={"0": "only"}), "at least two classes"),
    ],
)
def test_malformed_files_are_refused(mutate, match, tmp_path) -> None:
    src = make_source("multiclass")
    path = tmp_path / "set.json"
    sample_episode_set(src, 2, 1, 1).save(path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        EpisodeSet.load(path)


def test_not_json_and_bad_arguments(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json' is not valid JSON"):
        EpisodeSet.load(path)
    endless = FewShotMetaDataset(make_source("binary"), None, 1, 1, 0)
    with pytest.raises(ValueError, match="n_episodes is required: the dataset is endless"):
        EpisodeSet.from_dataset(endless)
    with pytest.raises(ValueError, match="n_episodes must be >= 1, got n_episodes=0"):
        EpisodeSet.from_dataset(endless, 0)
    assert len(EpisodeSet.from_dataset(endless, 2)) == 2
    with pytest.raises(TypeError, match="EpisodeMetaDataset"):
        EpisodeSet.from_dataset([1, 2])
    with pytest.raises(TypeError, match="EpisodeSet"):
        FixedEpisodeMetaDataset([], make_source("binary"))


def test_paper_protocol_size(tmp_path) -> None:
    """100 five-shot episodes with 10 query examples per class, as in the paper."""
    src = make_source("multiclass", n=600)
    episodes = sample_episode_set(src, 100, 5, 10, seed=0)
    episodes.save(tmp_path / "p.json")
    loaded = EpisodeSet.load(tmp_path / "p.json", src)
    assert len(loaded) == 100
    assert all(len(e.support) == 15 and len(e.query) == 30 for e in loaded.episodes)
