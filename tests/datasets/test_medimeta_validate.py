"""The validator reports every problem of a dataset folder, by file."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from torchcross.datasets.medimeta.validate import main, validate_all, validate_medimeta
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta


def test_valid_folders_are_ok(medimeta_root: Path) -> None:
    for ds in ("toy", "gray"):
        report = validate_medimeta(medimeta_root / ds)
        assert report.ok, str(report)
        assert report.problems == ()
        assert str(report).endswith(": ok")


def test_every_problem_is_reported_by_file(fresh_root: Path) -> None:
    d = fresh_root / "toy"
    os.remove(d / "task_labels" / "abnormal.npy")
    np.save(d / "task_labels" / "class.npy", np.load(d / "task_labels" / "class.npy")[:-1])
    np.save(d / "task_labels" / "severity grade.npy", np.full(20, 3))
    np.save(d / "task_labels" / "Finding labels.npy", np.zeros((20, 4), np.float32))
    np.save(d / "task_labels" / "leftover.npy", np.zeros(20))
    (d / "splits" / "test.txt").write_text("images/000001.tiff\nimages/000099.tiff")
    (d / "original_splits" / "val.txt").write_text("oops")
    (d / "annotations.csv").write_text("filepath,split\nimages/000000.tiff,train\n")
    info = (d / "info.yaml").read_text().replace("total_num_samples: 20", "total_num_samples: 21")
    (d / "info.yaml").write_text(info)
    report = validate_medimeta(d)
    assert not report.ok
    by_file = {os.path.relpath(f, d): msgs for f, msgs in report.by_file().items()}
    expected = {
        "images.hdf5": "has 20 images, info.yaml total_num_samples is 21",
        "task_labels/abnormal.npy": "missing",
        "task_labels/class.npy": "has 19 labels but the dataset has 20 images",
        "task_labels/severity grade.npy": "values [3] outside the declared class keys",
        "task_labels/Finding labels.npy": "dtype float32",
        "task_labels/leftover.npy": "not a task declared in info.yaml",
        "splits/test.txt": "line 2: image index 99 is out of range for 20 images",
        "original_splits/val.txt": "line 1: 'oops' is not an image path",
        "annotations.csv": "has 1 rows, the dataset has 20 images",
    }
    for file, text in expected.items():
        assert file in by_file, (file, str(report))
        assert any(text in m for m in by_file[file]), (file, by_file[file])
    text = str(report)
    assert "task_labels/abnormal.npy" in text
    assert "[error] missing" in text


def test_split_counts_overlaps_and_coverage(fresh_root: Path) -> None:
    d = fresh_root / "toy"
    train = (d / "splits" / "train.txt").read_text().splitlines()
    (d / "splits" / "val.txt").write_text("\n".join(train[:2]))
    report = validate_medimeta(d)
    messages = [str(p) for p in report.problems]
    assert any("lists 2 images, info.yaml splits_num_samples.val is 4" in m for m in messages), messages
    assert any("are also in train.txt" in m for m in messages), messages
    assert any("the splits cover 16 of 20 images" in m for m in messages), messages


def test_hdf5_problems(fresh_root: Path) -> None:
    path = fresh_root / "toy" / "images.hdf5"
    with h5py.File(path, "r") as f:
        data = f["images"][()]
    os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=data, chunks=(4, 4, 4, 3))
    report = validate_medimeta(fresh_root / "toy")
    assert report.ok
    assert [p.level for p in report.problems] == ["warning"]
    assert "chunked or compressed" in report.problems[0].message
    os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=data)
    report = validate_medimeta(fresh_root / "toy")
    assert [(p.file, p.level) for p in report.problems] == [(str(path), "error")]
    assert "has no HDF5 dataset 'images'" in report.problems[0].message
    os.remove(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=data[:, :, :3])
    assert "images have shape (4, 3, 3)" in str(validate_medimeta(fresh_root / "toy"))


def test_tiff_folder_must_match(fresh_root: Path) -> None:
    (fresh_root / "toy" / "images").mkdir()
    (fresh_root / "toy" / "images" / "000000.tiff").write_bytes(b"")
    assert "has 1 files, expected 000000.tiff..000019.tiff" in str(validate_medimeta(fresh_root / "toy"))


def test_malformed_info_is_one_problem(fresh_root: Path) -> None:
    (fresh_root / "toy" / "info.yaml").write_text("id: toy\nname: [")
    report = validate_medimeta(fresh_root / "toy")
    assert len(report.problems) == 1
    assert report.problems[0].file.endswith("info.yaml")
    with pytest.raises(Exception, match="not valid YAML"):
        report.raise_if_errors()
    assert not validate_medimeta(fresh_root / "absent").ok


def test_catalogue_ids_are_checked_against_the_catalogue(tmp_path: Path) -> None:
    path = write_synthetic_medimeta(tmp_path, "pbc", num_images=10, image_size=4)
    report = validate_medimeta(path)
    text = str(report)
    assert "input_size is (3, 4, 4), the MedIMeta catalogue says (3, 224, 224)" in text
    assert "total_num_samples is 10, the MedIMeta catalogue says 17092" in text
    assert "splits_num_samples is" in text
    info = Path(path) / "info.yaml"
    info.write_text(info.read_text().replace("task_name: cell class", "task_name: cells"))
    text = str(validate_medimeta(path))
    assert "task 'cell class' of the catalogue is missing" in text
    assert "task 'cells' is not in the catalogue entry of 'pbc'" in text


def test_validate_all_and_command_line(fresh_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_synthetic_medimeta(fresh_root, "other", num_images=10, image_size=4)
    assert main([str(fresh_root)]) == 0
    assert set(validate_all(fresh_root)) == {"other", "toy"}
    os.remove(fresh_root / "other" / "task_labels" / "class.npy")
    assert main([str(fresh_root), "other"]) == 1
    out = capsys.readouterr().out
    assert "toy: ok" in out
    assert "task_labels/class.npy" in out
    assert main([]) == 2
