"""Hugging Face datasets as task sources: kinds and class names from the features, images as written, split
mapping and stable hashed splits, episodes, the formats registry, and the errors that say how to fix the
dataset. Offline: only local datasets and save_to_disk folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets
from PIL import Image

from torchcross.data.metadataset import sample_episode_set
from torchcross.datasets.formats import get_format
from torchcross.datasets.hf_datasets import HFDatasetTaskSource, open_hf, scan_hf, write_synthetic_hf
from torchcross.tasks.catalogue import Catalogue, leave_one_out_sources


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return Path(write_synthetic_hf(tmp_path_factory.mktemp("hf"), num_images=24))


def _toy(n=12, labels=None, features=None, sizes=None):
    rng = np.random.default_rng(1)
    sizes = sizes or [(6, 6)] * n
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    features = features or datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    return datasets.Dataset.from_dict(
        {"image": images, "label": labels if labels is not None else [i % 3 for i in range(n)]},
        features=features,
    )


def test_scan_kinds_classes_splits_and_the_registry_round_trip(root):
    entries, problems = scan_hf(
        root, domains={"leaves": "Plants", "scenes": "Plants"}, upstream={"leaves": ["Beans"]}
    )
    assert problems == {}
    leaves, scenes = entries
    assert (leaves.id, leaves.domain, leaves.domain_overlaps) == ("leaves", "Plants", {"scenes"})
    assert leaves.info["upstream"] == ("beans",)
    assert leaves.info["splits"] == ("train", "val", "test")
    assert leaves.info["input_size"] is None
    (label,) = leaves.tasks
    assert (label.task_name, label.task_target.name, dict(label.classes)) == (
        "label",
        "MULTICLASS_CLASSIFICATION",
        {0: "healthy", 1: "rust", 2: "spot"},
    )
    binary, tags = scenes.tasks
    assert (binary.task_target.name, dict(binary.classes)) == (
        "BINARY_CLASSIFICATION",
        {0: "indoor", 1: "outdoor"},
    )
    assert (tags.task_target.name, tags.num_classes) == ("MULTILABEL_CLASSIFICATION", 4)
    fmt = get_format("hf-datasets")
    assert [e.id for e in fmt.scan(root)[0]] == ["leaves", "scenes"]
    assert [e.domain for e in fmt.scan(root)[0]] == ["leaves", "scenes"]  # default: one domain each
    assert leave_one_out_sources(Catalogue(entries), "leaves") == ()  # one domain: nothing to train on
    others = [t.task_id for t in leave_one_out_sources(Catalogue(fmt.scan(root)[0]), "leaves")]
    assert others == ["scenes/label", "scenes/tags"]
    src = fmt.open(root, "leaves", "label", "val", channels=1, mean=0.5, std=0.5, image_size=8)
    assert src.task_description.task_identifier == "leaves/label"
    assert len(src) == 6
    x, y = src.get_batch([0, 1, 2])
    assert x.shape == (3, 1, 8, 8)
    assert y.tolist() == [0, 1, 2]
    assert [e.id for e in scan_hf(root / "scenes")[0]] == ["scenes"]  # root itself a saved dataset
    assert len(open_hf(root / "scenes", "scenes", "tags", None)) == 24


def test_images_and_labels_equal_what_was_written(root):
    ds = datasets.load_from_disk(str(root / "scenes"))
    src = HFDatasetTaskSource(ds, label_column="tags", output="uint8")
    x, y = src.get_batch(range(24))
    for i in range(24):
        row = ds[i]
        assert torch.equal(x[i].permute(1, 2, 0), torch.from_numpy(np.array(row["image"])))
        assert sorted(np.flatnonzero(y[i].numpy()).tolist()) == sorted(row["tags"])
    assert src.task_description.classes == {0: "people", 1: "water", 2: "trees", 3: "cars"}


def test_dataset_dict_splits_map_and_a_missing_split_is_named(root):
    dd = datasets.load_from_disk(str(root / "leaves"))
    assert len(HFDatasetTaskSource(dd, "train")) == 24
    assert len(HFDatasetTaskSource(dd, "test")) == 6
    assert len(HFDatasetTaskSource(dd)) == 36
    two = datasets.DatasetDict({"train": dd["train"], "dev": dd["validation"]})
    assert len(HFDatasetTaskSource(two, "val")) == 6
    with pytest.raises(
        ValueError, match=r"no split for 'test': its splits \['train', 'dev'\] give \['train', 'val'\]"
    ):
        HFDatasetTaskSource(two, "test")
    clash = datasets.DatasetDict({"validation": dd["validation"], "dev": dd["validation"]})
    with pytest.raises(ValueError, match="'validation' and 'dev' both stand for 'val'"):
        HFDatasetTaskSource(clash, "val")


def test_hashed_splits_of_one_dataset_are_stable_under_reordering():
    ds = _toy(40)
    parts = {
        s: HFDatasetTaskSource(ds, s, dataset_id="toy", output="uint8") for s in ("train", "val", "test")
    }
    assert sum(len(p) for p in parts.values()) == 40
    shuffled = ds.shuffle(seed=3)
    for s, part in parts.items():
        again = HFDatasetTaskSource(shuffled, s, dataset_id="toy", output="uint8")
        a = {bytes(v.numpy().tobytes()) for v in part.get_batch(range(len(part)))[0]}
        b = {bytes(v.numpy().tobytes()) for v in again.get_batch(range(len(again)))[0]}
        assert a == b
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        HFDatasetTaskSource(ds, "dev")


def test_episodes_from_a_hf_source(root):
    src = open_hf(root, "leaves", "label", "train")
    episodes = sample_episode_set(src, n_episodes=2, n_shot=2, n_query=3)
    ep = episodes.episodes[0]
    assert len(ep.support) == 6
    assert src.get_batch(ep.query)[0].shape == (9, 3, 16, 16)


def test_label_and_image_columns_found_or_named():
    two = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=["a", "b", "c"]),
            "coarse": datasets.ClassLabel(names=["x", "y"]),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"image": list(_toy(6)["image"]), "label": [0, 1, 2] * 2, "coarse": [0, 1] * 3}, features=two
    )
    with pytest.raises(
        ValueError, match=r"several label columns \['label', 'coarse'\]; name one with label_column="
    ):
        HFDatasetTaskSource(ds)
    assert (
        HFDatasetTaskSource(ds, label_column="coarse").task_description.task_target.name
        == "BINARY_CLASSIFICATION"
    )
    imgs = datasets.Dataset.from_dict(
        {"image": list(ds["image"]), "thumb": list(ds["image"]), "label": [0, 1, 2] * 2},
        features=datasets.Features(
            {"image": datasets.Image(), "thumb": datasets.Image(), "label": two["label"]}
        ),
    )
    with pytest.raises(
        ValueError, match=r"2 Image columns \['image', 'thumb'\].*name one with image_column="
    ):
        HFDatasetTaskSource(imgs, label_column="label")
    assert len(HFDatasetTaskSource(imgs, label_column="label", image_column="thumb")) == 6
    with pytest.raises(ValueError, match="image_column='label' is not an Image column"):
        HFDatasetTaskSource(imgs, label_column="label", image_column="label")


def test_no_label_column_or_labels_that_are_not_class_labels():
    images = list(_toy(4)["image"])
    strings = datasets.Dataset.from_dict({"image": images, "label": ["cat", "dog"] * 2}).cast_column(
        "image", datasets.Image()
    )
    with pytest.raises(ValueError, match=r"no ClassLabel .* column.*class_encode_column\('label'\)"):
        HFDatasetTaskSource(strings)
    with pytest.raises(ValueError, match=r"column 'label' is Value\('string'\), not ClassLabel.*cast_column"):
        HFDatasetTaskSource(strings, label_column="label")
    ints = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0, 1]}).cast_column(
        "image", datasets.Image()
    )
    with pytest.raises(ValueError, match=r"column 'label' is Value\('int64'\), not ClassLabel"):
        HFDatasetTaskSource(ints, label_column="label")
    fixed = strings.class_encode_column("label")
    assert HFDatasetTaskSource(fixed).task_description.classes == {0: "cat", 1: "dog"}
    only_images = datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image())
    with pytest.raises(
        ValueError, match=r"no ClassLabel or Sequence.ClassLabel. column .*add a ClassLabel column"
    ):
        HFDatasetTaskSource(only_images)
    with pytest.raises(ValueError, match="no column 'y'"):
        HFDatasetTaskSource(fixed, label_column="y")


def test_no_image_column_and_unlabelled_rows():
    no_images = datasets.Dataset.from_dict(
        {"path": ["a.png", "b.png"], "label": [0, 1]},
        features=datasets.Features(
            {"path": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}
        ),
    )
    with pytest.raises(ValueError, match=r"has no Image columns .*cast_column\(name, datasets.Image\(\)\)"):
        HFDatasetTaskSource(no_images)
    with pytest.raises(ValueError, match=r"2 rows of column 'label' have no class \(e.g. row 1: -1"):
        HFDatasetTaskSource(_toy(4, labels=[0, -1, 2, -1]))


def test_bad_inputs_to_the_loaders(root, tmp_path):
    with pytest.raises(
        TypeError, match=r"expected a datasets\.Dataset, a DatasetDict or a save_to_disk folder"
    ):
        HFDatasetTaskSource(42)
    with pytest.raises(ValueError, match=r"is not a folder written by Dataset\.save_to_disk"):
        HFDatasetTaskSource(tmp_path)
    with pytest.raises(ValueError, match="no save_to_disk folder named 'bugs'"):
        open_hf(root, "bugs", "label", None)
    with pytest.raises(ValueError, match="is not a folder"):
        scan_hf(tmp_path / "nothing")
    _toy(3).remove_columns("label").save_to_disk(str(tmp_path / "unlabelled"))
    entries, problems = scan_hf(tmp_path)
    assert entries == []
    assert "no ClassLabel" in problems[str(tmp_path / "unlabelled")]


def test_images_of_varying_size_need_an_image_size():
    ds = _toy(3, sizes=[(6, 6), (8, 5), (6, 6)])
    with pytest.raises(ValueError, match=r"images of different sizes .* pass image_size="):
        HFDatasetTaskSource(ds).get_batch([0, 1])
    assert HFDatasetTaskSource(ds, image_size=(4, 7)).get_batch([0, 1])[0].shape == (2, 3, 4, 7)


def test_the_registered_synthetic_writer_writes_a_scannable_root(tmp_path):
    root = get_format("hf-datasets").synthetic(tmp_path, seed=1, num_images=8)
    entries, problems = get_format("hf-datasets").scan(root, label_column="label")
    assert problems == {}
    assert [[t.task_name for t in e.tasks] for e in entries] == [["label"], ["label"]]
