"""The MedIMeta reader on generated folders in the exact on-disk format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from torchcross.datasets._images import normalize_batch, rgb_to_gray
from torchcross.datasets.medimeta.folder import read_split
from torchcross.datasets.medimeta.reader import MedIMeta
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskTarget

TASKS = ("class", "abnormal", "Finding labels", "severity grade")  # as written by the conftest fixture
KINDS = {
    "class": TaskTarget.MULTICLASS_CLASSIFICATION,
    "abnormal": TaskTarget.BINARY_CLASSIFICATION,
    "Finding labels": TaskTarget.MULTILABEL_CLASSIFICATION,
    "severity grade": TaskTarget.ORDINAL_REGRESSION,
}


def decode_index(image_chw_uint8: torch.Tensor) -> int:
    """Image i starts with the little-endian bytes of i (see write_synthetic_medimeta)."""
    flat = image_chw_uint8.permute(1, 2, 0).reshape(-1)[:4].numpy().astype(np.int64)
    return int(flat[0] + 256 * flat[1] + 65536 * flat[2] + 16777216 * flat[3])


def raw_images(root: Path, ds: str) -> np.ndarray:
    with h5py.File(root / ds / "images.hdf5", "r") as f:
        return f["images"][()]


@pytest.mark.parametrize("task", TASKS)
def test_each_task_kind_reads_canonical_labels(medimeta_root: Path, task: str) -> None:
    src = MedIMeta(medimeta_root, "toy", task, split="train")
    desc = src.task_description
    assert desc.task_target is KINDS[task]
    assert desc.task_identifier == f"toy/{task}"
    assert desc.domain_identifier == "Synthetic"
    stored = np.load(medimeta_root / "toy" / "task_labels" / f"{task}.npy")
    rows = read_split(medimeta_root / "toy" / "splits" / "train.txt", 30)
    np.testing.assert_array_equal(src.labels, normalize_labels(stored[rows], desc))
    assert src.labels.dtype == np.int64
    expected_shape = {"class": (18,), "abnormal": (18, 1), "Finding labels": (18, 4), "severity grade": (18,)}
    assert src.labels.shape == expected_shape[task]
    x, y = src[3]
    assert x.shape == (3, 8, 8)
    assert x.dtype == torch.float32
    assert torch.equal(y, torch.as_tensor(src.labels[3]))


def test_images_are_the_stored_rows(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "class", split=["val", "test"], output="uint8")
    raw = raw_images(medimeta_root, "toy")
    for pos in range(len(src)):
        x, _ = src[pos]
        row = int(src.split_indices[pos])
        assert decode_index(x) == row
        assert torch.equal(x, torch.from_numpy(raw[row]).permute(2, 0, 1))


def test_get_batch_equals_items_in_any_order(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "Finding labels", split="train")
    idx = [5, 0, 17, 5, -1]
    xb, yb = src.get_batch(idx)
    assert xb.shape == (5, 3, 8, 8)
    assert xb.is_contiguous()
    for k, i in enumerate(idx):
        x, y = src[i]
        assert torch.equal(xb[k], x)
        assert torch.equal(yb[k], y)
    raw = raw_images(medimeta_root, "toy")[src.split_indices[[5, 0, 17, 5, -1]]]
    ref = torch.from_numpy(raw).permute(0, 3, 1, 2).double() / 255
    torch.testing.assert_close(xb.double(), ref, rtol=0, atol=1e-7)


def test_hdf5_and_tiff_folders_agree(medimeta_root: Path) -> None:
    for ds in ("toy", "gray"):
        h = MedIMeta(medimeta_root, ds, "class", split="test")
        t = MedIMeta(medimeta_root, ds, "class", split="test", use_hdf5=False)
        idx = list(range(len(h)))
        assert torch.equal(h.get_batch(idx)[0], t.get_batch(idx)[0])


def test_channel_policies(medimeta_root: Path) -> None:
    rgb_raw = raw_images(medimeta_root, "toy")
    gray = MedIMeta(medimeta_root, "toy", "class", channels=1, output="uint8")
    x, _ = gray.get_batch([0, 7])
    assert x.shape == (2, 1, 8, 8)
    for k, row in enumerate([0, 7]):
        pil = np.asarray(Image.fromarray(rgb_raw[row]).convert("L"))
        np.testing.assert_array_equal(x[k, 0].numpy(), pil)
    g3 = MedIMeta(medimeta_root, "gray", "class", channels=3)
    x3, _ = g3.get_batch([0, 1])
    g1 = MedIMeta(medimeta_root, "gray", "class")
    x1, _ = g1.get_batch([0, 1])
    assert x3.shape == (2, 3, 6, 6)
    assert x1.shape == (2, 1, 6, 6)
    assert torch.equal(x3, x1.expand(2, 3, 6, 6))
    with pytest.raises(ValueError, match="channels must be 'keep', 1 or 3"):
        MedIMeta(medimeta_root, "gray", "class", channels=2)


def test_uint8_path_and_normalize_batch_match_the_float_path(medimeta_root: Path) -> None:
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    f = MedIMeta(medimeta_root, "toy", "class", mean=mean, std=std)
    u = MedIMeta(medimeta_root, "toy", "class", output="uint8")
    idx = [3, 1, 4, 1, 5]
    xf, yf = f.get_batch(idx)
    xu, yu = u.get_batch(idx)
    assert xu.dtype == torch.uint8
    assert torch.equal(yf, yu)
    torch.testing.assert_close(normalize_batch(xu, mean, std), xf, rtol=0, atol=0)
    # float64 reference: (x / 255 - mean) / std, as ToTensor + Normalize
    ref = (xu.double() / 255 - torch.tensor(mean).double().view(1, 3, 1, 1)) / torch.tensor(
        std
    ).double().view(1, 3, 1, 1)
    torch.testing.assert_close(xf.double(), ref, rtol=1e-6, atol=1e-6)
    x0506 = MedIMeta(medimeta_root, "toy", "class", mean=0.5, std=0.5).get_batch(idx)[0]
    assert float(x0506.min()) >= -1.0
    assert float(x0506.max()) <= 1.0
    assert u.get_batch(idx, output="float")[0].dtype == torch.float32


def test_transforms_tensor_and_pil(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "class", transform=lambda x: x.flip(-1))
    plain = MedIMeta(medimeta_root, "toy", "class")
    assert torch.equal(src[2][0], plain[2][0].flip(-1))
    assert torch.equal(src.get_batch([2, 4])[0], plain.get_batch([2, 4])[0].flip(-1))

    def pil_to_tensor(im: Image.Image) -> torch.Tensor:
        assert isinstance(im, Image.Image)
        return torch.from_numpy(np.asarray(im).copy())

    pil = MedIMeta(medimeta_root, "gray", "class", transform=pil_to_tensor, transform_input="pil", channels=3)
    img, _ = pil[0]
    assert img.shape == (6, 6, 3)  # PIL RGB image, converted by the user's transform
    with pytest.raises(TypeError, match="transform must be callable"):
        MedIMeta(medimeta_root, "toy", "class", transform="flip")


def test_splits_original_splits_and_lists(medimeta_root: Path) -> None:
    all_src = MedIMeta(medimeta_root, "toy", "class")
    parts = [MedIMeta(medimeta_root, "toy", "class", split=s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(all_src) == 30
    both = MedIMeta(medimeta_root, "toy", "class", split=["test", "train"])
    assert np.array_equal(
        both.split_indices, np.sort(np.concatenate([parts[2].split_indices, parts[0].split_indices]))
    )
    orig = MedIMeta(medimeta_root, "toy", "class", original_split="train")
    assert np.array_equal(orig.split_indices, parts[0].split_indices)
    with pytest.raises(ValueError, match="not both"):
        MedIMeta(medimeta_root, "toy", "class", split="train", original_split="train")
    with pytest.raises(ValueError, match=r"split 'trian' does not exist.*\['test', 'train', 'val'\]"):
        MedIMeta(medimeta_root, "toy", "class", split="trian")
    with pytest.raises(ValueError, match="at least one split"):
        MedIMeta(medimeta_root, "toy", "class", split=[])
    with pytest.raises(ValueError, match="repeat"):
        MedIMeta(medimeta_root, "toy", "class", split=["train", "train"])


def test_split_files_tolerate_blank_and_trailing_lines(fresh_root: Path) -> None:
    path = fresh_root / "toy" / "splits" / "val.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n" + "\n\n".join(lines) + "\n\n  \n")
    src = MedIMeta(fresh_root, "toy", "class", split="val")
    assert sorted(src.split_indices.tolist()) == sorted(int(x[7:13]) for x in lines)


def test_pickles_without_handles_and_reads_after_unpickling(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "abnormal", split="train")
    before = src.get_batch([1, 2])[0]  # opens images.hdf5 in this process
    clone = pickle.loads(pickle.dumps(src))
    assert clone._store._file is None
    assert torch.equal(clone.get_batch([1, 2])[0], before)
    src.close()
    assert torch.equal(src.get_batch([1, 2])[0], before)


def test_chunked_compressed_hdf5_falls_back_to_row_reads(fresh_root: Path) -> None:
    path = fresh_root / "toy" / "images.hdf5"
    with h5py.File(path, "r") as f:
        data = f["images"][()]
    contiguous = MedIMeta(fresh_root, "toy", "class").get_batch([4, 1, 9])[0]
    os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=data, chunks=(2, *data.shape[1:]), compression="gzip")
    src = MedIMeta(fresh_root, "toy", "class")
    assert not src._store.contiguous
    assert torch.equal(src.get_batch([4, 1, 9])[0], contiguous)
    as_uint8 = MedIMeta(fresh_root, "toy", "class", output="uint8").get_batch([4, 1, 9])[0]
    assert torch.equal(as_uint8, torch.from_numpy(data[src.split_indices[[4, 1, 9]]]).permute(0, 3, 1, 2))


def test_fork_workers_return_the_right_images(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "class", output="uint8")
    src.get_batch([0])  # parent opened its map before forking
    loader = DataLoader(src, batch_size=4, num_workers=2, multiprocessing_context="fork")
    rows = [decode_index(x) for xb, _ in loader for x in xb]
    assert rows == list(range(30))


@pytest.mark.slow
def test_spawn_workers_load(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "severity grade", split="train", output="uint8")
    loader = DataLoader(src, batch_size=6, num_workers=1, multiprocessing_context="spawn")
    batches = list(loader)
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    assert [decode_index(x) for x in xs] == src.split_indices.tolist()
    assert torch.equal(ys, torch.from_numpy(src.labels))


def test_repr_and_compat_attributes(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "bus", "malignancy", split="test")
    assert "bus" in repr(src)
    assert "BINARY_CLASSIFICATION" in repr(src)
    assert src.task_target is TaskTarget.BINARY_CLASSIFICATION  # 0.0.6 attribute names
    assert src.classes == {0: "no malignant finding", 1: "malignant finding"}
    assert src.dataset_name == "Breast Ultrasound"
    assert MedIMeta.get_available_datasets(medimeta_root) == ["bus", "gray", "toy"]
    assert sum(src.class_counts().values()) == len(src)


def test_uint8_rgb_is_a_channels_last_view_of_the_stored_rows(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "class", output="uint8")
    raw = raw_images(medimeta_root, "toy")
    idx = [7, 3, 3, 0]
    xb, _ = src.get_batch(idx)
    assert xb.shape == (4, 3, 8, 8)
    assert xb.dtype == torch.uint8
    assert xb.is_contiguous(memory_format=torch.channels_last)  # rows gathered, never transposed
    assert torch.equal(xb, torch.from_numpy(raw[src.split_indices[idx]]).permute(0, 3, 1, 2))
    normalized = normalize_batch(xb, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    assert normalized.is_contiguous()  # what models expect, whatever the input layout
    reference = MedIMeta(medimeta_root, "toy", "class", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    torch.testing.assert_close(normalized, reference.get_batch(idx)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("use_hdf5", [True, False])
def test_uint8_gray_and_converted_channels(medimeta_root: Path, use_hdf5: bool) -> None:
    gray = MedIMeta(medimeta_root, "gray", "class", output="uint8", use_hdf5=use_hdf5)
    xb, _ = gray.get_batch([2, 0])
    assert xb.shape[:2] == (2, 1)
    assert xb.is_contiguous()
    as_rgb = MedIMeta(medimeta_root, "gray", "class", output="uint8", channels=3, use_hdf5=use_hdf5)
    assert torch.equal(as_rgb.get_batch([2, 0])[0], xb.expand(-1, 3, -1, -1))
    rgb = MedIMeta(medimeta_root, "toy", "class", output="uint8")
    as_gray = MedIMeta(medimeta_root, "toy", "class", output="uint8", channels=1)
    expected = torch.from_numpy(rgb_to_gray(raw_images(medimeta_root, "toy")[rgb.split_indices[[1]]]))
    assert torch.equal(as_gray.get_batch([1])[0], expected.unsqueeze(1))


def test_hdf5_read_into_out(medimeta_root: Path) -> None:
    src = MedIMeta(medimeta_root, "toy", "class")
    store = src._store
    out = np.empty((2, *store.shape[1:]), np.uint8)
    assert store.read([3, 1], out=out) is out
    assert np.array_equal(out, raw_images(medimeta_root, "toy")[[3, 1]])
    with pytest.raises(ValueError, match="out must be a C-contiguous uint8 array of shape"):
        store.read([3, 1], out=np.empty((3, *store.shape[1:]), np.uint8))
    with pytest.raises(ValueError, match="got float32"):
        store.read([3, 1], out=np.empty((2, *store.shape[1:]), np.float32))
