"""Bad input to the MedIMeta reader: each a clear error naming the file.

Broken folders never hide the good ones.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from torchcross.datasets.medimeta.folder import (
    MedIMetaFileError,
    MedIMetaFolderWarning,
    available_datasets,
    available_tasks,
    read_split,
)
from torchcross.datasets.medimeta.reader import MedIMeta
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta


def edit_info(root: Path, old: str, new: str) -> Path:
    path = root / "toy" / "info.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_unknown_dataset_lists_what_exists(fresh_root: Path) -> None:
    with pytest.raises(ValueError, match=r"no MedIMeta dataset 'nope'.*available: \['toy'\]"):
        MedIMeta(fresh_root, "nope", "class")
    with pytest.raises(ValueError, match=r"'oct' is a MedIMeta dataset: download it"):
        MedIMeta(fresh_root, "oct", "disease class")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        MedIMeta(fresh_root / "missing", "toy", "class")


def test_unknown_task_lists_the_tasks(fresh_root: Path) -> None:
    with pytest.raises(ValueError, match=r"no task 'clas'; its tasks are: \['class', 'abnormal'"):
        MedIMeta(fresh_root, "toy", "clas")


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("task_target: MULTICLASS_CLASSIFICATION", "task_target: MULTICLASS", "tasks[0].task_target"),
        ("input_size:\n- 3", "input_size:\n- 2", "input_size"),
        ("id: toy", "id: other", "id"),
        ("domain: Synthetic", "domain: [1, 2]", "domain"),
        ("  labels:\n    0: normal", "  labels:\n    zero: normal", "tasks[0].labels"),
        ("- task_name: class", "- task_name: ''", "tasks[0].task_name"),
    ],
)
def test_malformed_info_yaml_names_file_and_key(fresh_root: Path, old: str, new: str, key: str) -> None:
    path = edit_info(fresh_root, old, new)
    with pytest.raises(MedIMetaFileError, match=re.escape(f"{path}: key {key!r}")):
        MedIMeta(fresh_root, "toy", "class")


def test_invalid_yaml_and_missing_key(fresh_root: Path) -> None:
    path = fresh_root / "toy" / "info.yaml"
    text = path.read_text()
    path.write_text(text + "\n  - : [unclosed\n")
    with pytest.raises(MedIMetaFileError, match=re.escape(f"{path}: not valid YAML")):
        MedIMeta(fresh_root, "toy", "class")
    path.write_text(text.replace("name: Synthetic toy\n", ""))
    with pytest.raises(MedIMetaFileError, match=re.escape(f"{path}: key 'name': missing")):
        MedIMeta(fresh_root, "toy", "class")


def test_label_and_image_counts_disagree(fresh_root: Path) -> None:
    label_file = fresh_root / "toy" / "task_labels" / "class.npy"
    np.save(label_file, np.load(label_file)[:-3])
    with pytest.raises(
        MedIMetaFileError, match=re.escape(f"{label_file}: has 17 labels but ") + ".*20 images"
    ):
        MedIMeta(fresh_root, "toy", "class")


def test_labels_outside_the_declared_classes(fresh_root: Path) -> None:
    label_file = fresh_root / "toy" / "task_labels" / "severity grade.npy"
    labels = np.load(label_file)
    labels[0] = 5
    np.save(label_file, labels)
    with pytest.raises(MedIMetaFileError, match=re.escape(str(label_file)) + r".*\[5\] outside"):
        MedIMeta(fresh_root, "toy", "severity grade")
    edit_info(fresh_root, "task_name: abnormal", "task_name: x")
    with pytest.raises(MedIMetaFileError, match=re.escape(str(fresh_root / "toy" / "task_labels" / "x.npy"))):
        MedIMeta(fresh_root, "toy", "x")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("images/000020.tiff", "line 2: image index 20 is out of range for 20 images"),
        ("images/abc.tiff", "line 2: 'images/abc.tiff' is not an image path"),
        ("7", "line 2: '7' is not an image path"),
    ],
)
def test_bad_split_lines_name_file_and_line(fresh_root: Path, line: str, message: str) -> None:
    path = fresh_root / "toy" / "splits" / "test.txt"
    first = path.read_text().splitlines()[0]
    path.write_text(f"{first}\n{line}")
    with pytest.raises(MedIMetaFileError, match=re.escape(f"{path}: {message}")):
        MedIMeta(fresh_root, "toy", "class", split="test")
    MedIMeta(fresh_root, "toy", "class", split="train")  # other splits are unaffected


def test_duplicate_split_lines(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("images/000001.tiff\nimages/000001.tiff")
    with pytest.raises(MedIMetaFileError, match=r"image indices \[1\] are listed more than once"):
        read_split(path, 5)


def test_hdf5_without_images_dataset(fresh_root: Path) -> None:
    path = fresh_root / "toy" / "images.hdf5"
    os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=np.zeros((20, 4, 4, 3), np.uint8))
    with pytest.raises(
        MedIMetaFileError, match=re.escape(f"{path}: has no HDF5 dataset 'images' (found: ['pixels'])")
    ):
        MedIMeta(fresh_root, "toy", "class")


def test_hdf5_not_hdf5_wrong_dtype_or_missing(fresh_root: Path) -> None:
    path = fresh_root / "toy" / "images.hdf5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(MedIMetaFileError, match=re.escape(f"{path}: cannot open as HDF5")):
        MedIMeta(fresh_root, "toy", "class")
    os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((20, 4, 4, 3), np.float32))
    with pytest.raises(MedIMetaFileError, match="must be uint8"):
        MedIMeta(fresh_root, "toy", "class")
    os.remove(path)
    with pytest.raises(MedIMetaFileError, match=re.escape(f"{path}: missing")):
        MedIMeta(fresh_root, "toy", "class")
    with pytest.raises(MedIMetaFileError, match=r"000000.tiff: missing"):
        MedIMeta(fresh_root, "toy", "class", use_hdf5=False)


def test_images_disagree_with_input_size(fresh_root: Path) -> None:
    edit_info(fresh_root, "- 4\n- 4\n", "- 5\n- 4\n")
    with pytest.raises(
        MedIMetaFileError, match=r"images.hdf5: images are \(4, 4, 3\) but info.yaml input_size"
    ):
        MedIMeta(fresh_root, "toy", "class")


def test_out_of_range_indices(fresh_root: Path) -> None:
    src = MedIMeta(fresh_root, "toy", "class", split="train")
    with pytest.raises(IndexError, match=r"indices \[12\] out of range for 12 items"):
        src[12]
    with pytest.raises(IndexError, match=r"indices \[-13\] out of range for 12 items"):
        src.get_batch([0, -13])


def test_bad_options(fresh_root: Path) -> None:
    with pytest.raises(ValueError, match="output must be"):
        MedIMeta(fresh_root, "toy", "class", output="half")
    with pytest.raises(ValueError, match="pass them to normalize_batch"):
        MedIMeta(fresh_root, "toy", "class", output="uint8", mean=0.5, std=0.5)
    with pytest.raises(ValueError, match="transform_input"):
        MedIMeta(fresh_root, "toy", "class", transform_input="array")
    with pytest.raises(TypeError, match="dataset_id must be a str"):
        MedIMeta(fresh_root, 3, "class")


def test_broken_folder_never_hides_the_good_ones(fresh_root: Path) -> None:
    write_synthetic_medimeta(fresh_root, "second", num_images=10, image_size=4)
    (fresh_root / "broken").mkdir()
    (fresh_root / "broken" / "info.yaml").write_text("id: broken\ntasks: 3\n")
    (fresh_root / "not_a_dataset").mkdir()  # no info.yaml: silently ignored
    with pytest.warns(MedIMetaFolderWarning, match=r"broken/info.yaml: key 'input_size': missing"):
        assert available_datasets(fresh_root) == ["second", "toy"]
    with pytest.warns(MedIMetaFolderWarning, match=r"broken/info.yaml: key 'input_size': missing"):
        assert list(available_tasks(fresh_root)) == ["second", "toy"]
    assert available_datasets(fresh_root, errors="ignore") == ["second", "toy"]
    with pytest.raises(MedIMetaFileError, match="broken"):
        available_datasets(fresh_root, errors="raise")
    with pytest.raises(ValueError, match="errors must be"):
        available_datasets(fresh_root, errors="shout")
    assert len(MedIMeta(fresh_root, "second", "class")) == 10  # reading a good dataset is unaffected
    with pytest.raises(MedIMetaFileError, match=r"broken/info\.yaml"):
        MedIMeta(fresh_root, "broken", "class")
    with pytest.raises(
        ValueError, match=r"available: \['second', 'toy'\] \(broken folders skipped: \['broken'\]\)"
    ):
        MedIMeta(fresh_root, "third", "class")


def test_changes_on_disk_are_seen_at_once(fresh_root: Path) -> None:
    assert available_datasets(fresh_root) == ["toy"]
    write_synthetic_medimeta(fresh_root, "late", num_images=10, image_size=4)
    assert available_datasets(fresh_root) == ["late", "toy"]
