"""MedMNIST npz files and the generic image sources, mixed with MedIMeta tasks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from torchcross.data.multitask import MultiTaskBatchSampler
from torchcross.data.wrap_source import WrapTaskSource
from torchcross.datasets.generic import ImageArrayTaskSource, ImageFolderTaskSource, read_image_folder
from torchcross.datasets.medimeta.reader import MedIMeta
from torchcross.datasets.medmnist import MEDMNIST_INFO, MedMNIST, medmnist_description
from torchcross.tasks.task import TaskDescription, TaskTarget

SIZES = {"train": 12, "val": 4, "test": 6}


def write_npz(path: Path, rgb: bool, label_cols: int, n_values: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_values, (n, label_cols)).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.mark.parametrize(
    ("flag", "rgb", "cols", "values", "kind", "label_shape"),
    [
        ("pathmnist", True, 1, 9, TaskTarget.MULTICLASS_CLASSIFICATION, (12,)),
        ("chestmnist_64", False, 14, 2, TaskTarget.MULTILABEL_CLASSIFICATION, (12, 14)),
        ("pneumoniamnist", False, 1, 2, TaskTarget.BINARY_CLASSIFICATION, (12, 1)),
        ("retinamnist", True, 1, 5, TaskTarget.ORDINAL_REGRESSION, (12,)),
    ],
)
def test_medmnist_kinds(
    tmp_path: Path, flag: str, rgb: bool, cols: int, values: int, kind, label_shape
) -> None:
    path = tmp_path / f"{flag}.npz"
    arrays = write_npz(path, rgb, cols, values)
    src = MedMNIST(path, "train")
    assert src.task_description.task_target is kind
    assert src.labels.shape == label_shape
    assert src.labels.dtype == np.int64
    np.testing.assert_array_equal(src.labels.reshape(12, -1), arrays["train_labels"].astype(np.int64))
    x, _y = src.get_batch([3, 0])
    c = 3 if rgb else 1
    assert x.shape == (2, c, 28, 28)
    assert x.dtype == torch.float32
    raw = arrays["train_images"][[3, 0]]
    ref = torch.from_numpy(raw).permute(0, 3, 1, 2) if rgb else torch.from_numpy(raw)[:, None]
    torch.testing.assert_close(x.double(), ref.double() / 255, rtol=0, atol=1e-7)
    both = MedMNIST(path, ["val", "test"], channels=3, output="uint8")
    assert len(both) == 10
    assert both[0][0].shape == (3, 28, 28)
    assert both[0][0].dtype == torch.uint8
    clone = pickle.loads(pickle.dumps(both))
    assert "_images" not in clone.__dict__  # images are re-read per process, not pickled
    assert torch.equal(clone.get_batch([9])[0], both.get_batch([9])[0])


def test_medmnist_info_table() -> None:
    assert len(MEDMNIST_INFO) == 12
    d = medmnist_description("chestmnist")
    assert d.num_classes == 14
    assert d.task_identifier == "medmnist/chestmnist"
    assert medmnist_description("breastmnist").classes == {0: "malignant", 1: "normal, benign"}
    with pytest.raises(ValueError, match=r"unknown MedMNIST flag 'foomnist'.*pass task_description="):
        medmnist_description("foomnist")


def test_medmnist_errors_and_custom_files(tmp_path: Path) -> None:
    path = tmp_path / "mynewmnist.npz"
    write_npz(path, False, 1, 3)
    with pytest.raises(ValueError, match="unknown MedMNIST flag 'mynewmnist'"):
        MedMNIST(path)
    d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "mine")
    assert len(MedMNIST(path, "test", task_description=d)) == 6
    with pytest.raises(ValueError, match="split must be one of"):
        MedMNIST(path, "dev", task_description=d)
    with pytest.raises(FileNotFoundError, match=r"MedMNIST file '.*absent\.npz' does not exist"):
        MedMNIST(tmp_path / "absent.npz")
    np.savez(tmp_path / "octmnist.npz", train_images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"octmnist.npz: has no arrays \['train_labels'\]"):
        MedMNIST(tmp_path / "octmnist.npz")
    np.savez(
        tmp_path / "bloodmnist.npz",
        train_images=np.zeros((3, 28, 28), np.uint8),
        train_labels=np.zeros((4, 1)),
    )
    with pytest.raises(ValueError, match=r"bloodmnist\.npz: .*3 images but 4 labels"):
        MedMNIST(tmp_path / "bloodmnist.npz").get_batch([0])
    np.savez(
        tmp_path / "dermamnist.npz", train_images=np.zeros((2, 28, 28), np.uint8), train_labels=[[9], [0]]
    )
    with pytest.raises(ValueError, match=r"dermamnist.npz: .*\[9\] outside"):
        MedMNIST(tmp_path / "dermamnist.npz")


def test_image_array_source(rng: np.random.Generator) -> None:
    d = TaskDescription("ORDINAL_REGRESSION", {1: "a", 4: "b", 6: "c"}, "ord")
    images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    src = ImageArrayTaskSource(images, [1, 4, 6, 1, 4], d, channels=1, mean=0.5, std=0.25)
    x, y = src[2]
    assert x.shape == (1, 4, 4)
    assert int(y) == 6
    src_t = ImageArrayTaskSource(images, [1, 4, 6, 1, 4], d, transform=lambda t: t * 0)
    assert float(src_t.get_batch([0, 1])[0].abs().sum()) == 0
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        ImageArrayTaskSource(images, [1, 4, 6, 1], d)
    with pytest.raises(ValueError, match="must be uint8"):
        ImageArrayTaskSource(images.astype(np.float32), [1, 4, 6, 1, 4], d)
    with pytest.raises(IndexError, match="out of range"):
        src.get_batch([5])
    with pytest.raises(TypeError, match="TaskDescription"):
        ImageArrayTaskSource(images, [1, 4, 6, 1, 4], "ord")


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="at least two"):
        read_image_folder(tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderTaskSource(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        read_image_folder(tmp_path / "nowhere")


def test_medmnist_and_any_dataset_mix_with_medimeta_in_one_stream(
    medimeta_root: Path, tmp_path: Path
) -> None:
    write_npz(tmp_path / "pneumoniamnist.npz", False, 1, 2)
    medmnist = MedMNIST(tmp_path / "pneumoniamnist.npz", "train", channels=3, output="uint8")
    medimeta = MedIMeta(medimeta_root, "toy", "class", split="train", output="uint8")
    pairs = [(torch.zeros(3, 5, 5, dtype=torch.uint8), i % 2) for i in range(8)]  # any map-style dataset
    wrapped = WrapTaskSource(pairs, TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"}, "plain"))
    sampler = MultiTaskBatchSampler([medimeta, medmnist, wrapped], batch_size=4, seed=0)
    seen = {}
    for (x, y), desc in sampler:
        seen.setdefault(desc.task_identifier, []).append((x.shape[1:], y.shape[0], x.dtype))
    assert set(seen) == {"toy/class", "medmnist/pneumoniamnist", "plain"}
    assert {s[0] for s in seen["toy/class"]} == {(3, 8, 8)}
    assert {s[0] for s in seen["medmnist/pneumoniamnist"]} == {(3, 28, 28)}
    assert sum(n for _, n, _ in seen["medmnist/pneumoniamnist"]) == 12
    assert all(dt == torch.uint8 for v in seen.values() for *_, dt in v)
