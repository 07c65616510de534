"""MedIMeta folders under attack: path traversal, FIFOs and directories as files, bad text, foreign data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from reliability_helpers import no_hang

from torchcross.cli import main
from torchcross.datasets.medimeta import (
    MedIMeta,
    MedIMetaFileError,
    available_datasets,
    read_split,
    scan_datasets,
    validate_all,
    write_medimeta,
    write_synthetic_medimeta,
)
from torchcross.datasets.medimeta.paths import clean_writer_leftovers
from torchcross.datasets.medmnist import MedMNIST
from torchcross.tasks.task import TaskDescription


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``good`` and ``other`` (valid) under ``data``, and ``secret/good`` outside it."""
    data = tmp_path / "data"
    for name in ("good", "other"):
        write_synthetic_medimeta(data, name, num_images=10, image_size=4, channels=1)
    write_synthetic_medimeta(tmp_path / "secret", "good", num_images=10, image_size=4, channels=1)
    return data


@pytest.mark.parametrize("dataset_id", ["../secret/good", "..", "/etc", "good/../../secret/good", ".hidden"])
def test_dataset_ids_that_leave_the_root_are_refused(root: Path, dataset_id: str) -> None:
    with pytest.raises(ValueError, match=r"dataset_id .* would leave the data root"):
        MedIMeta(root, dataset_id, "class")


def test_task_names_from_info_yaml_that_leave_the_root_are_refused(root: Path) -> None:
    info = yaml.safe_load((root / "good" / "info.yaml").read_text())
    info["tasks"][0]["task_name"] = "../../../secret/good/task_labels/class"
    (root / "good" / "info.yaml").write_text(yaml.safe_dump(info))
    with pytest.raises(MedIMetaFileError, match=r"tasks\[0\]\.task_name.*would leave the data root"):
        MedIMeta(root, "good", "../../../secret/good/task_labels/class")
    infos, problems = scan_datasets(root)
    assert sorted(infos) == ["other"]
    assert "would leave the data root" in problems["good"]
    d = TaskDescription("BINARY_CLASSIFICATION", {0: "n", 1: "y"})
    with pytest.raises(ValueError, match=r"task names must .*would leave the data root"):
        write_medimeta(root, "new", np.zeros((2, 4, 4), np.uint8), {"../x": (d, [0, 1])})
    with pytest.raises(ValueError, match=r"dataset_id must be a plain folder name"):
        write_medimeta(root, "../new", np.zeros((2, 4, 4), np.uint8), {"x": (d, [0, 1])})


@pytest.mark.parametrize("kind", ["fifo", "directory", "latin-1", "missing-id"])
def test_one_broken_info_yaml_is_reported_and_the_others_listed(
    root: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    info = root / "good" / "info.yaml"
    if kind == "fifo":
        info.unlink()
        os.mkfifo(info)
    elif kind == "directory":
        info.unlink()
        info.mkdir()
    elif kind == "latin-1":
        info.write_bytes(info.read_bytes().replace(b"Synthetic good", b"Synth\xe9tic"))
    else:
        info.write_text("name: x\n")
    why = {"fifo": "is a FIFO", "directory": "is a directory", "latin-1": "not UTF-8", "missing-id": "'id'"}[
        kind
    ]
    with no_hang():
        infos, problems = scan_datasets(root)
        assert sorted(infos) == ["other"]
        assert why in problems["good"]
        with pytest.warns(UserWarning, match=why):
            assert available_datasets(root) == ["other"]
        with pytest.raises(MedIMetaFileError, match=why):
            MedIMeta(root, "good", "class")
        reports = validate_all(root)
        assert sorted(reports) == ["good", "other"]
        assert not reports["good"].ok
        assert main(["medimeta", "verify", str(root)]) == 1
        assert "1 of 2 datasets valid; invalid: ['good']" in capsys.readouterr().out
        assert main(["medimeta", "list", "--data-path", str(root)]) == 0
        out, err = capsys.readouterr()
        assert "| other |" in out
        assert "skipped broken dataset folder good" in err


@pytest.mark.parametrize("line", ["/etc/000001.tif", "../images/000001.tiff", "images/x/000001.tiff"])
def test_split_lines_that_are_not_image_paths_are_errors(tmp_path: Path, line: str) -> None:
    split = tmp_path / "train.txt"
    split.write_text(f"images/000000.tiff\n{line}\n")
    with pytest.raises(MedIMetaFileError, match=r"train\.txt: line 2: .* is not an image path"):
        read_split(split, 10)
    split.write_bytes(b"images/000000.tiff\n\xff\n")
    with pytest.raises(MedIMetaFileError, match=r"train\.txt: is not UTF-8 text"):
        read_split(split, 10)


def test_a_tiff_of_another_size_is_an_error(tmp_path: Path) -> None:
    write_synthetic_medimeta(tmp_path, "toy", num_images=10, image_size=4, channels=1, write_tiffs=True)
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "toy" / "images" / "000003.tiff")
    source = MedIMeta(tmp_path, "toy", "class", use_hdf5=False)
    with pytest.raises(
        MedIMetaFileError, match=r"000003\.tiff: image is \(5, 4\), but info\.yaml input_size"
    ):
        source.get_batch(np.arange(len(source)))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda i: i["tasks"][0]["labels"].update({0: ["a", "b"]}),
            r"labels\.0.*class name must be text, got list",
        ),
        (
            lambda i: i["tasks"][0]["labels"].update({1: {"x": 1}}),
            r"labels\.1.*class name must be text, got dict",
        ),
        (lambda i: i.update(domain_overlaps=["other", None]), r"domain_overlaps.*list of dataset ids.*None"),
        (lambda i: i.update(subject_overlaps=[3]), r"subject_overlaps.*list of dataset ids"),
    ],
)
def test_the_validator_rejects_odd_class_names_and_overlaps(root: Path, change, match: str) -> None:
    info = yaml.safe_load((root / "good" / "info.yaml").read_text())
    change(info)
    (root / "good" / "info.yaml").write_text(yaml.safe_dump(info))
    report = validate_all(root)["good"]
    assert not report.ok
    with pytest.raises(MedIMetaFileError, match=match):
        report.raise_if_errors()


def test_overwrite_replaces_only_dataset_folders(root: Path) -> None:
    thesis = root / "good" / "thesis.tex"
    thesis.write_text("years of work")
    with pytest.raises(
        FileExistsError, match=r"holds \['thesis.tex'\], which are not part of a MedIMeta dataset"
    ):
        write_synthetic_medimeta(root, "good", num_images=10, image_size=4, overwrite=True)
    assert thesis.read_text() == "years of work"
    (root / "plain").mkdir()
    (root / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        write_synthetic_medimeta(root, "plain", num_images=10, image_size=4, overwrite=True)
    (root / "file").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not a dataset folder \(a file or a link\)"):
        write_synthetic_medimeta(root, "file", num_images=10, image_size=4, overwrite=True)
    (root / "empty").mkdir()
    write_synthetic_medimeta(root, "empty", num_images=10, image_size=4, overwrite=True)
    write_synthetic_medimeta(root, "other", num_images=12, image_size=4, overwrite=True)
    assert len(MedIMeta(root, "other", "class")) == 12
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


def test_leftovers_of_interrupted_writes_are_reported_and_cleaned(root: Path) -> None:
    (root / ".other.tmp-999999999-0123abcd").mkdir()
    (root / ".good.old-999999999-0123abcd").mkdir()
    (root / f".other.tmp-{os.getpid()}-0123abcd").mkdir()  # a live writer's: left alone
    _, problems = scan_datasets(root)
    assert sorted(problems) == [".good.old-999999999-0123abcd", ".other.tmp-999999999-0123abcd"]
    assert "partly written copy of dataset 'other'" in problems[".other.tmp-999999999-0123abcd"]
    assert clean_writer_leftovers(str(root), "other") == [".other.tmp-999999999-0123abcd"]
    assert clean_writer_leftovers(str(root), "good") == [".good.old-999999999-0123abcd"]  # 'good' exists
    assert sorted(p.name for p in root.iterdir()) == [f".other.tmp-{os.getpid()}-0123abcd", "good", "other"]


def test_the_medmnist_converter_refuses_fractional_labels(tmp_path: Path) -> None:
    arrays = {f"{s}_images": np.zeros((3, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.array([[0.0], [1.0], [1.0]]) for s in ("train", "val", "test")})
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    assert MedMNIST(tmp_path / "breastmnist.npz").labels.ravel().tolist() == [0, 1, 1]
    arrays["val_labels"] = np.array([[0.0], [1.9], [1.0]])
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    with pytest.raises(ValueError, match=r"breastmnist\.npz: labels must be whole class numbers.*1\.9"):
        MedMNIST(tmp_path / "breastmnist.npz", ["train", "val"])
    assert (
        main(["medimeta", "convert", "medmnist", str(tmp_path / "breastmnist.npz"), "--out", str(tmp_path)])
        == 2
    )


def test_episodes_sample_does_not_overwrite_without_force(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_synthetic_medimeta(root, "big", num_images=30, image_size=4, channels=1)
    target = root / "good" / "info.yaml"
    before = target.read_text()
    argv = ["episodes", "sample", "--data-path", str(root), "--task", "big/class", "--n-episodes", "2"]
    argv += ["--n-shot", "1", "--n-query", "1", "--split", "train", "--out"]
    assert main([*argv, str(target)]) == 2
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert target.read_text() == before
    assert main([*argv, str(root / "eps.json")]) == 0
    assert main([*argv, str(root / "eps.json"), "--force"]) == 0
