"""The MedIMeta catalogue shipped as data, listings, and leave-one-out source selection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from torchcross.datasets.medimeta.catalogue import (
    leave_one_out_tasks,
    list_datasets,
    list_tasks,
    medimeta_catalogue,
)
from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
from torchcross.tasks.catalogue import Catalogue
from torchcross.tasks.task import TaskTarget

OVERLAP_GROUPS = [
    {"aml", "pbc"},
    {"mammo_calc", "mammo_mass"},
    {"cxr", "pneumonia"},
    {"derm", "skinl_derm"},
    {"glaucoma", "dr_regular", "dr_uwf", "fundus"},
    {"organs_axial", "organs_coronal", "organs_sagittal"},
    {"skinl_photo", "skinl_derm"},
]


def test_counts_match_the_paper() -> None:
    cat = medimeta_catalogue()
    assert isinstance(cat, Catalogue)
    assert len(cat) == 19
    assert len(cat.tasks()) == 54
    kinds = Counter(t.task_target for t in cat.tasks())
    assert kinds == {
        TaskTarget.MULTICLASS_CLASSIFICATION: 30,
        TaskTarget.BINARY_CLASSIFICATION: 13,
        TaskTarget.MULTILABEL_CLASSIFICATION: 6,
        TaskTarget.ORDINAL_REGRESSION: 5,
    }


def test_entries_are_consistent() -> None:
    for d in medimeta_catalogue():
        info = d.info
        assert sum(info["splits_num_samples"].values()) == info["total_num_samples"], d.id
        assert sum(info["original_splits_num_samples"].values()) == info["total_num_samples"], d.id
        assert info["input_size"][0] in (1, 3)
        assert info["input_size"][1:] == (224, 224)
    cat = medimeta_catalogue()
    assert cat.dataset("oct").info["splits_num_samples"] == {"train": 91615, "val": 16694, "test": 1000}
    assert cat.dataset("crc").info["original_splits_num_samples"] == {"train": 100000, "val": 7180, "test": 0}
    art = cat.task("dr_regular", "Artifact")
    assert art.task_target is TaskTarget.ORDINAL_REGRESSION
    assert sorted(art.classes) == [0, 1, 4, 6, 8, 10]
    assert sorted(cat.task("dr_regular/Clarity").classes) == [1, 4, 6, 8, 10]
    assert cat.task("fundus", "disease labels").num_classes == 45
    assert cat.task("skinl_photo", "Diagnosis").num_classes == 15
    assert cat.task("aml", "morphological class").num_classes == 15


@pytest.mark.parametrize("group", OVERLAP_GROUPS, ids=lambda g: "-".join(sorted(g)))
def test_declared_overlaps(group: set[str]) -> None:
    cat = medimeta_catalogue()
    for a in group:
        for b in group - {a}:
            assert cat.overlaps(a, b), (a, b)


def test_listing_the_catalogue() -> None:
    assert list_datasets()[:2] == ["aml", "bus"]
    assert len(list_datasets()) == 19
    assert len(list_tasks()) == 54
    assert len(list_tasks(task_target="MULTILABEL_CLASSIFICATION")) == 6
    assert ("skinl_derm", "Regression Structures grouped") in list_tasks(dataset_id="skinl_derm")
    with pytest.raises(ValueError, match=r"unknown MedIMeta dataset id 'xray'; known ids: \['aml'"):
        list_tasks(dataset_id="xray")


@pytest.mark.parametrize(
    ("target", "excluded"),
    [
        ("glaucoma", {"glaucoma", "dr_regular", "dr_uwf", "fundus"}),
        ("skinl_derm", {"skinl_derm", "skinl_photo", "derm"}),
        ("organs_axial", {"organs_axial", "organs_coronal", "organs_sagittal"}),
        ("bus", {"bus"}),
        ("oct/disease class", {"oct"}),
    ],
)
def test_leave_one_out_excludes_overlaps(target: str, excluded: set[str]) -> None:
    sources = leave_one_out_tasks(target)
    used = {ds for ds, _ in sources}
    assert used == set(list_datasets()) - excluded
    n_tasks = sum(len(medimeta_catalogue().tasks(d)) for d in excluded)
    assert len(sources) == 54 - n_tasks
    binary = leave_one_out_tasks(target, task_targets=["BINARY_CLASSIFICATION"])
    assert binary
    assert all(medimeta_catalogue().task(*p).task_target is TaskTarget.BINARY_CLASSIFICATION for p in binary)


def test_leave_one_out_unknown_target() -> None:
    with pytest.raises(ValueError, match="unknown dataset id 'nope'"):
        leave_one_out_tasks("nope")


def test_listing_and_leave_one_out_on_disk(tmp_path: Path) -> None:
    for ds in ("bus", "aml", "pbc"):
        write_synthetic_medimeta(tmp_path, ds, num_images=10, image_size=4)
    write_synthetic_medimeta(tmp_path, "mine", num_images=10, image_size=4, domain_overlaps=["bus"])
    assert list_datasets(tmp_path) == ["aml", "bus", "mine", "pbc"]
    assert list_tasks(tmp_path, dataset_id="bus") == [("bus", "case category"), ("bus", "malignancy")]
    assert list_tasks(tmp_path, task_target="ORDINAL_REGRESSION") == [("mine", "severity grade")]
    with pytest.raises(
        ValueError, match=r"no dataset 'oct' under .*present: \['aml', 'bus', 'mine', 'pbc'\]"
    ):
        list_tasks(tmp_path, dataset_id="oct")
    # catalogue ids only: overlaps from the catalogue, restricted to what is present
    assert leave_one_out_tasks("aml", tmp_path) == [
        ("bus", "case category"),
        ("bus", "malignancy"),
        *(("mine", t) for t in ("class", "abnormal", "Finding labels", "severity grade")),
    ]
    # a non-catalogue dataset: overlaps read from the info.yaml files
    assert {ds for ds, _ in leave_one_out_tasks("mine", tmp_path)} == {"aml", "pbc"}
    assert {ds for ds, _ in leave_one_out_tasks("bus", tmp_path)} == {"aml", "pbc"}
