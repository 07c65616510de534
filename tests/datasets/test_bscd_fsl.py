"""BSCD-FSL readers on fixtures in the four downloaded layouts: classes, kinds, images, the ChestX subset
rule, splits, the format registry, and errors that name the file, the line and the fix."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchcross.datasets import BSCDFSL, open_bscd_fsl, scan_bscd_fsl, write_synthetic_bscd_fsl
from torchcross.datasets.bscd_fsl import CHESTX_BSCD_CLASSES, CHESTX_FINDINGS, ISIC_CLASSES
from torchcross.datasets.formats import get_format
from torchcross.tasks.task import TaskTarget

PER_CLASS = 6


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four datasets, read-only (tests that break one copy it)."""
    return Path(write_synthetic_bscd_fsl(tmp_path_factory.mktemp("bscd"), images_per_class=PER_CLASS, seed=1))


def _copy(root: Path, tmp_path: Path, sub: str) -> Path:
    shutil.copytree(root / sub, tmp_path / sub)
    return tmp_path / sub


def test_scan_finds_the_four_datasets_with_tasks_domains_and_upstream(root: Path) -> None:
    entries, problems = scan_bscd_fsl(root)
    assert problems == {}
    by_id = {e.id: e for e in entries}
    assert sorted(by_id) == ["chestx", "cropdisease", "eurosat", "isic2018"]
    chestx = by_id["chestx"]
    assert [(t.task_name, t.task_target) for t in chestx.tasks] == [
        ("finding", TaskTarget.MULTICLASS_CLASSIFICATION),
        ("findings", TaskTarget.MULTILABEL_CLASSIFICATION),
    ]
    assert list(chestx.tasks[0].classes.values()) == list(CHESTX_BSCD_CLASSES)
    assert list(chestx.tasks[1].classes.values()) == list(CHESTX_FINDINGS)
    assert chestx.domain == "Chest X-ray"
    assert chestx.info["upstream"] == ("chestx-ray14",)
    assert "ham10000" in by_id["isic2018"].info["upstream"]
    assert by_id["isic2018"].domain == "Dermatoscopy"
    assert by_id["cropdisease"].info["upstream"] == ("plantvillage",)
    assert list(by_id["isic2018"].tasks[0].classes.values()) == list(ISIC_CLASSES)
    assert by_id["eurosat"].tasks[0].num_classes == 10
    assert by_id["cropdisease"].tasks[0].num_classes == 6
    for e in entries:
        assert e.info["splits"] == ("train", "val", "test")
        assert e.info["input_size"] is None
    # a dataset folder itself is a root too, and the format registry reads the same
    assert [e.id for e in scan_bscd_fsl(root / "EuroSAT" / "2750")[0]] == ["eurosat"]
    assert [e.id for e in get_format("bscd-fsl").scan(root)[0]] == sorted(by_id)


def test_images_and_labels_are_what_was_written(root: Path) -> None:
    src = BSCDFSL(root, "chestx", "findings", output="uint8", channels=1)
    assert src.task_description.task_identifier == "chestx/findings"
    x, y = src.get_batch(range(len(src)))
    for i in (0, 5, len(src) - 1):
        ref = np.array(Image.open(src.paths[i]))
        assert torch.equal(x[i, 0], torch.from_numpy(ref))
    rows = {r[0]: r[1] for r in _rows(root / "chestX" / "Data_Entry_2017.csv")}
    for i, path in enumerate(src.paths):
        findings = rows[os.path.basename(path)]
        expected = {f for f in findings.split("|") if f != "No Finding"}
        assert {CHESTX_FINDINGS[j] for j in np.flatnonzero(y[i].numpy())} == expected
    eurosat = BSCDFSL(root, "eurosat", output="uint8")
    x, y = eurosat.get_batch([0, PER_CLASS])
    assert x.shape == (2, 3, 16, 16)
    assert y.tolist() == [0, 1]
    assert torch.equal(
        x[1].permute(1, 2, 0), torch.from_numpy(np.array(Image.open(eurosat.paths[PER_CLASS])))
    )
    assert eurosat.task_description.classes[0] == "AnnualCrop"
    isic = BSCDFSL(root, "isic2018", image_size=8)
    assert isic.get_batch([0])[0].shape == (1, 3, 8, 8)
    gt = _rows(_isic_csv(root / "ISIC"))
    assert isic.labels.tolist() == [[float(v) for v in r[1:]].index(1.0) for r in gt[1:]]


def test_the_chestx_subset_follows_the_benchmark_rule(tmp_path: Path) -> None:
    folder = tmp_path / "chestX"
    (folder / "images").mkdir(parents=True)
    rows = [
        ("a.png", "Atelectasis"),  # kept: class 0
        ("b.png", "Pneumothorax"),  # kept: class 6
        ("c.png", "No Finding"),  # left out (all-zero in the multi-label task)
        ("d.png", "Pneumonia"),  # left out: Pneumonia is not one of the 7
        ("e.png", "Effusion|Mass"),  # left out: two findings
        ("f.png", "Hernia"),  # left out: not one of the 7
        ("g.png", "Mass"),  # kept: class 4
    ]
    with open(folder / "Data_Entry_2017.csv", "w", newline="") as f:
        csv.writer(f).writerows([["Image Index", "Finding Labels", "Follow-up #", "Patient ID"]])
        csv.writer(f).writerows([[n, lab, "0", str(i)] for i, (n, lab) in enumerate(rows)])
    for n, _ in rows:
        Image.new("L", (4, 4)).save(folder / "images" / n)
    single = BSCDFSL(tmp_path, "chestx")
    assert [os.path.basename(p) for p in single.paths] == ["a.png", "b.png", "g.png"]
    assert single.labels.tolist() == [0, 6, 4]
    multi = BSCDFSL(tmp_path, "chestx", "findings")
    assert len(multi) == 7
    assert multi.labels[2].sum() == 0
    assert multi.labels[4].sum() == 2
    # no official lists: hash splits of the patient ids cover every image once
    parts = [BSCDFSL(tmp_path, "chestx", "findings", s) for s in ("train", "val", "test")]
    assert sorted(p for s in parts for p in s.paths) == sorted(multi.paths)


def test_chestx_official_lists_give_the_test_split(root: Path) -> None:
    test_names = set((root / "chestX" / "test_list.txt").read_text().split())
    test = BSCDFSL(root, "chestx", "findings", "test")
    assert {os.path.basename(p) for p in test.paths} == test_names
    train, val = (BSCDFSL(root, "chestx", "findings", s) for s in ("train", "val"))
    assert not {os.path.basename(p) for p in train.paths + val.paths} & test_names
    assert len(train) + len(val) + len(test) == len(BSCDFSL(root, "chestx", "findings"))
    patients = lambda s: {os.path.basename(p)[:8] for p in s.paths}  # noqa: E731
    assert not patients(train) & patients(val)  # split by patient


def test_hash_splits_of_class_folders_partition_the_dataset(root: Path) -> None:
    whole = BSCDFSL(root, "cropdisease")
    parts = [BSCDFSL(root, "cropdisease", split=s).paths for s in ("train", "val", "test")]
    assert sorted(p for part in parts for p in part) == sorted(whole.paths)
    with pytest.raises(ValueError, match="split must be 'train', 'val', 'test' or None"):
        BSCDFSL(root, "cropdisease", split="all")


def test_open_follows_the_format_contract(root: Path) -> None:
    src = get_format("bscd-fsl").open(
        root, "isic2018", "diagnosis", None, channels=1, image_size=6, mean=0.5, std=0.5
    )
    x, _ = src.get_batch([0, 1])
    assert x.shape == (2, 1, 6, 6)
    assert float(x.min()) >= -1.0
    assert float(x.max()) <= 1.0
    assert src.task_description.task_identifier == "isic2018/diagnosis"
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        open_bscd_fsl(root, "isic2018", "diagnosis", None, channels=2)


def test_unknown_dataset_task_and_missing_folders(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown BSCD-FSL dataset 'miniimagenet'; known: chestx"):
        BSCDFSL(root, "miniimagenet")
    with pytest.raises(ValueError, match="eurosat has no task 'disease'; its tasks: land cover"):
        BSCDFSL(root, "eurosat", "disease")
    with pytest.raises(FileNotFoundError, match=r"no ChestX-ray14 folder under .*Data_Entry_2017\.csv"):
        BSCDFSL(tmp_path, "chestx")


def _rewrite(path: Path, edit) -> None:
    rows = _rows(path)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))


def _isic_csv(folder: Path) -> Path:
    return folder / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"


def test_isic_errors_name_the_file_line_and_fix(root: Path, tmp_path: Path) -> None:
    isic = _copy(root, tmp_path, "ISIC")
    gt = _isic_csv(isic)
    good = gt.read_text()
    _rewrite(gt, lambda r: [r[0], [r[1][0], "1.0", "1.0", *r[1][3:]], *r[2:]])
    with pytest.raises(
        ValueError, match=r"GroundTruth\.csv, line 2: image 'ISIC_0024306' .*not one-hot; each row"
    ):
        BSCDFSL(isic, "isic2018")
    gt.write_text(good)
    _rewrite(gt, lambda r: [*r, r[1]])
    with pytest.raises(
        ValueError, match=r"line 44: image 'ISIC_0024306' is listed again \(first on line 2\)"
    ):
        BSCDFSL(isic, "isic2018")
    gt.write_text(good)
    _rewrite(gt, lambda r: [[c.lower() for c in r[0]], *r[1:]])
    with pytest.raises(
        ValueError, match=r"GroundTruth\.csv: the header has columns .*the task 3 ground truth has"
    ):
        BSCDFSL(isic, "isic2018")
    gt.write_text(good)
    _rewrite(gt, lambda r: [r[0], ["../../secret", *r[1][1:]], *r[2:]])
    with pytest.raises(ValueError, match=r"line 2: image '\.\./\.\./secret\.jpg' .*outside the image folder"):
        BSCDFSL(isic, "isic2018")
    gt.write_text(good)
    _rewrite(gt, lambda r: [r[0], r[1][:3], *r[2:]])
    with pytest.raises(
        ValueError, match=r"GroundTruth\.csv, line 2: 3 cells, but the header names 8 columns"
    ):
        BSCDFSL(isic, "isic2018")
    gt.write_text(good)
    (isic / "ISIC2018_Task3_Training_Input" / "ISIC_0024307.jpg").unlink()
    with pytest.raises(ValueError, match=r"line 3: image .*ISIC_0024307\.jpg' is listed but missing"):
        BSCDFSL(isic, "isic2018")
    # scan reports the broken folder as a problem and keeps the others
    entries, problems = scan_bscd_fsl(tmp_path)
    assert entries == []
    assert "listed but missing" in problems[str(isic)]


def test_chestx_errors_name_the_file_line_and_fix(root: Path, tmp_path: Path) -> None:
    chestx = _copy(root, tmp_path, "chestX")
    data = chestx / "Data_Entry_2017.csv"
    good = data.read_text()
    _rewrite(data, lambda r: [r[0], [r[1][0], "Atelectasis|Cardiomegally", *r[1][2:]], *r[2:]])
    with pytest.raises(
        ValueError, match=r"Data_Entry_2017\.csv, line 2: unknown findings \['Cardiomegally'\]"
    ):
        BSCDFSL(chestx, "chestx")
    data.write_text(good)
    _rewrite(data, lambda r: [r[0], [r[1][0], "No Finding|Mass", *r[1][2:]], *r[2:]])
    with pytest.raises(ValueError, match="'No Finding' together with other findings"):
        BSCDFSL(chestx, "chestx")
    data.write_text(good)
    _rewrite(data, lambda r: [*r, r[3]])
    with pytest.raises(ValueError, match=r"is listed again \(first on line 4\); list it once"):
        BSCDFSL(chestx, "chestx")
    data.write_text(good)
    _rewrite(data, lambda r: [[c for c in r[0] if c != "Patient ID"], *r[1:]])
    with pytest.raises(ValueError, match=r"the header has columns .* not \['Patient ID'\]; Data_Entry_2017"):
        BSCDFSL(chestx, "chestx")
    data.write_text(good)
    _rewrite(data, lambda r: [r[0], ["../images_001/x.png", *r[1][1:]], *r[2:]])
    with pytest.raises(
        ValueError, match=r"line 2: image '\.\./images_001/x\.png' .*outside the image folder"
    ):
        BSCDFSL(chestx, "chestx")
    data.write_text(good)
    name = _rows(data)[5][0]
    (chestx / "images_001" / "images" / name).unlink()
    with pytest.raises(ValueError, match=rf"line 6: image '{name}' is listed but not in"):
        BSCDFSL(chestx, "chestx")


def test_eurosat_class_folders_without_2750_are_found(root: Path, tmp_path: Path) -> None:
    shutil.copytree(root / "EuroSAT" / "2750", tmp_path / "EuroSAT_RGB")
    entries, problems = scan_bscd_fsl(tmp_path)
    assert problems == {}
    assert [(e.id, e.info["folder"]) for e in entries] == [("eurosat", str(tmp_path / "EuroSAT_RGB"))]
    shutil.copytree(root / "EuroSAT", tmp_path / "EuroSAT")
    assert "a second EuroSAT folder" in next(iter(scan_bscd_fsl(tmp_path)[1].values()))


def test_the_synthetic_writer_is_a_function_of_its_seed(tmp_path: Path) -> None:
    a, b, c = (
        Path(write_synthetic_bscd_fsl(tmp_path / name, seed=seed, images_per_class=1, image_size=4))
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    name = Path("chestX") / "images_001" / "images" / "00000001_000.png"
    assert (a / name).read_bytes() != (c / name).read_bytes()
