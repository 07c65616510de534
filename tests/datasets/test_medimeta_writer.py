"""Writing any images and labels in the MedIMeta format, and reading them back unchanged."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from torchcross.datasets.generic import ImageFolderTaskSource
from torchcross.datasets.medimeta.reader import MedIMeta
from torchcross.datasets.medimeta.validate import validate_medimeta
from torchcross.datasets.medimeta.writer import write_medimeta
from torchcross.tasks.task import TaskDescription

MC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"})
BIN = TaskDescription("BINARY_CLASSIFICATION", {0: "neg", 1: "pos"})
ML = TaskDescription("MULTILABEL_CLASSIFICATION", {0: "x", 1: "y"})
ORD = TaskDescription("ORDINAL_REGRESSION", {1: "low", 4: "mid", 6: "high"})


def tasks_for(n: int, rng: np.random.Generator) -> dict:
    return {
        "disease class": (MC, rng.integers(0, 3, n)),
        "Is Positive": (BIN, rng.integers(0, 2, (n, 1))),
        "findings": (ML, rng.integers(0, 2, (n, 2))),
        "grade": (ORD, rng.choice([1, 4, 6], n)),
    }


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_arrays_and_labels(tmp_path: Path, rng: np.random.Generator, channels: int) -> None:
    n = 12
    shape = (n, 5, 7) if channels == 1 else (n, 5, 7, 3)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    tasks = tasks_for(n, rng)
    splits = {"train": [0, 1, 2, 3, 4, 5, 6], "val": [7, 8], "test": [9, 10, 11]}
    path = write_medimeta(
        tmp_path,
        "mine",
        images,
        tasks,
        splits,
        original_splits=["train"] * 9 + ["test"] * 3,
        domain="Test",
        write_tiffs=True,
        annotations={"patient_id": list(range(n))},
    )
    with h5py.File(Path(path) / "images.hdf5", "r") as f:
        ds = f["images"]
        assert ds.chunks is None
        assert ds.compression is None
        assert ds.dtype == np.uint8
        np.testing.assert_array_equal(ds[()], images)
    for i in (0, n - 1):
        np.testing.assert_array_equal(
            np.asarray(Image.open(Path(path) / "images" / f"{i:06d}.tiff")), images[i]
        )
    for name, (desc, labels) in tasks.items():
        src = MedIMeta(tmp_path, "mine", name, output="uint8")
        assert src.task_description.task_target is desc.task_target
        assert dict(src.task_description.classes) == dict(desc.classes)
        np.testing.assert_array_equal(src.labels, np.asarray(labels))
        x, _y = src.get_batch(np.arange(n))
        expected = (
            torch.from_numpy(images).unsqueeze(1)
            if channels == 1
            else torch.from_numpy(images).permute(0, 3, 1, 2)
        )
        assert torch.equal(x, expected)
        tiff = MedIMeta(tmp_path, "mine", name, output="uint8", use_hdf5=False)
        assert torch.equal(tiff.get_batch(np.arange(n))[0], expected)
    stored = np.load(Path(path) / "task_labels" / "Is Positive.npy")
    assert stored.shape == (n,)  # binary labels are stored (N,), as in MedIMeta
    assert (Path(path) / "splits" / "val.txt").read_text() == "images/000007.tiff\nimages/000008.tiff"
    assert not (Path(path) / "original_splits" / "val.txt").exists()  # empty splits have no file
    assert MedIMeta(tmp_path, "mine", "grade", original_split="test").split_indices.tolist() == [9, 10, 11]
    info = yaml.safe_load((Path(path) / "info.yaml").read_text())
    assert info["input_size"] == [channels, 5, 7]
    assert info["total_num_samples"] == n
    assert info["splits_num_samples"] == {"train": 7, "val": 2, "test": 3}
    assert info["original_splits_num_samples"] == {"train": 9, "val": 0, "test": 3}
    with open(Path(path) / "annotations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    assert next(iter(rows[0])) == "filepath"
    assert rows[3]["filepath"] == "images/000003.tiff"
    assert rows[3]["patient_id"] == "3"
    assert rows[3]["disease class"] == MC.classes[int(tasks["disease class"][1][3])]
    assert validate_medimeta(path).ok, str(validate_medimeta(path))


def test_tensor_and_sequence_inputs(tmp_path: Path, rng: np.random.Generator) -> None:
    nchw = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    labels = {"t": (BIN, [0, 1] * 3)}
    write_medimeta(tmp_path, "tensor", nchw, labels)
    seq = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in nchw]
    write_medimeta(tmp_path, "pil", seq, labels)
    write_medimeta(tmp_path, "chw", list(nchw), labels)
    for ds in ("tensor", "pil", "chw"):
        assert torch.equal(MedIMeta(tmp_path, ds, "t", output="uint8").get_batch(range(6))[0], nchw), ds


def test_image_folder_tree_converts(tmp_path: Path, rng: np.random.Generator) -> None:
    tree = tmp_path / "tree"
    for cls in ("cat", "dog", "eel"):
        (tree / cls).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(tree / cls / f"{k}.png")
    src = ImageFolderTaskSource(tree, image_size=(6, 6), channels=1)
    path = write_medimeta(
        tmp_path / "out", "pets", src.images, {"animal": (src.task_description, src.labels)}
    )
    back = MedIMeta(tmp_path / "out", "pets", "animal")
    assert back.task_description.classes == {0: "cat", 1: "dog", 2: "eel"}
    assert torch.equal(back.get_batch(range(6))[0], src.get_batch(range(6))[0])
    assert validate_medimeta(path).ok


def test_overwrite_and_atomicity(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 3), np.uint8)
    write_medimeta(tmp_path, "d", x, {"t": (BIN, [0, 1, 0, 1])})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_medimeta(tmp_path, "d", x, {"t": (BIN, [0, 1, 0, 1])})
    write_medimeta(tmp_path, "d", x + 1, {"t": (BIN, [1, 1, 0, 1])}, overwrite=True)
    assert MedIMeta(tmp_path, "d", "t").labels[:, 0].tolist() == [1, 1, 0, 1]
    images = [np.zeros((3, 3), np.uint8)] * 3 + [np.zeros((4, 4), np.uint8)]
    with pytest.raises(ValueError, match=r"image 0 has shape|has shape \(4, 4\)"):
        write_medimeta(tmp_path, "bad", images * 100, {"t": (BIN, [0, 1] * 200)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # nothing left behind


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tasks": {"t": (BIN, [0, 1, 0])}}, ValueError, "has 3 labels for 4 images"),
        ({"tasks": {"t": (BIN, [0, 1, 0, 2])}}, ValueError, "outside the declared class keys"),
        ({"tasks": {}}, ValueError, "at least one task"),
        ({"tasks": {"a/b": (BIN, [0, 1, 0, 1])}}, ValueError, "contain no '/'"),
        ({"tasks": {"t": ("BINARY", [0, 1, 0, 1])}}, TypeError, "TaskDescription, labels"),
        ({"splits": {"train": [0, 1], "test": [1, 2]}}, ValueError, "splits must be disjoint"),
        ({"splits": {"training": [0]}}, ValueError, "names must be among"),
        ({"splits": {"train": [4]}}, ValueError, "out of range for 4 images"),
        ({"splits": ["train"] * 3}, ValueError, "has 3 entries for 4 images"),
        ({"images": np.zeros((4, 3, 3), np.float32)}, TypeError, "must be uint8"),
        ({"images": np.zeros((0, 3, 3), np.uint8)}, ValueError, "images is empty"),
        ({"images": np.zeros((4, 3, 3, 2), np.uint8)}, ValueError, r"\(H, W\) or \(H, W, 3\)"),
        ({"dataset_id": "../x"}, ValueError, "plain folder name"),
        ({"annotations": {"pid": [1]}}, ValueError, "has 1 values for 4 images"),
    ],
)
def test_writer_errors(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    args = {"dataset_id": "d", "images": np.zeros((4, 3, 3), np.uint8), "tasks": {"t": (BIN, [0, 1, 0, 1])}}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        write_medimeta(tmp_path, **args)
