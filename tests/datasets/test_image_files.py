"""ImageFilesTaskSource and hash_splits: decoding, errors that name the file, splits stable under edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from torchcross.datasets import image_files
from torchcross.datasets.image_files import ImageFilesTaskSource, hash_splits
from torchcross.tasks.task import TaskDescription

DESC = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy/t")


def _write(tmp_path, n=12, size=(6, 4)):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_batches_equal_single_images_and_threads_do_not_change_them(tmp_path):
    paths = _write(tmp_path)
    src = ImageFilesTaskSource(paths, [i % 3 for i in range(12)], DESC, output="uint8")
    x, y = src.get_batch(range(12))  # >= 8: decoded in threads
    assert x.shape == (12, 3, 4, 6)
    assert y.tolist() == [i % 3 for i in range(12)]
    for i in range(12):
        ref = np.array(Image.open(paths[i]).convert("RGB"))
        assert torch.equal(x[i].permute(1, 2, 0), torch.from_numpy(ref))
    grey = ImageFilesTaskSource(paths, [0] * 12, DESC, channels=1, image_size=8)
    assert grey[3][0].shape == (1, 8, 8)
    assert float(grey[3][0].max()) <= 1.0


def test_errors_name_the_file(tmp_path, monkeypatch):
    paths = _write(tmp_path, n=2)
    with pytest.raises(ValueError, match="2 image paths but 3 labels"):
        ImageFilesTaskSource(paths, [0, 1, 2], DESC)
    missing = ImageFilesTaskSource([*paths, str(tmp_path / "gone.png")], [0, 1, 2], DESC)
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        missing.get_batch([2])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot decode image file .*bad\.png"):
        ImageFilesTaskSource([str(tmp_path / "bad.png")], [0], DESC).get_batch([0])
    Image.new("RGB", (9, 9)).save(tmp_path / "big.png")
    Image.new("RGB", (5, 5)).save(tmp_path / "other.png")
    mixed = ImageFilesTaskSource([str(tmp_path / "big.png"), str(tmp_path / "other.png")], [0, 1], DESC)
    with pytest.raises(ValueError, match=r"different sizes .*image_size"):
        mixed.get_batch([0, 1])
    monkeypatch.setattr(image_files, "MAX_IMAGE_PIXELS", 80)
    with pytest.raises(ValueError, match=r"big\.png.*decompression bomb"):
        mixed.get_batch([0])


def test_hash_splits_are_a_function_of_each_name():
    names = [f"img_{i}.jpg" for i in range(2000)]
    splits = hash_splits(names, salt="ds")
    together = np.sort(np.concatenate(list(splits.values())))
    assert np.array_equal(together, np.arange(2000))
    assert abs(len(splits["train"]) / 2000 - 0.7) < 0.05
    # dropping half the files keeps every remaining file in its split
    half = hash_splits(names[::2], salt="ds")
    for k in splits:
        assert set(np.asarray(names[::2])[half[k]]) == set(np.asarray(names)[splits[k]]) & set(names[::2])
    assert not np.array_equal(hash_splits(names, salt="other")["train"], splits["train"])
    with pytest.raises(ValueError, match="summing to 1"):
        hash_splits(names, (0.5, 0.2, 0.2))
