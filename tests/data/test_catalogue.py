"""Tests of the dataset catalogue and leave-one-out source selection."""

from __future__ import annotations

import pickle

import pytest

from torchcross.tasks.catalogue import Catalogue, DatasetEntry, TaskEntry, leave_one_out_sources
from torchcross.tasks.task import TaskDescription, TaskTarget

BIN = {0: "no", 1: "yes"}
ABC = {0: "a", 1: "b", 2: "c"}
LMH = {1: "l", 4: "m", 6: "h"}


def task(ds: str, name: str = "t", target: str = "BINARY_CLASSIFICATION", classes=BIN) -> TaskEntry:
    return TaskEntry(ds, name, target, classes)


def small() -> Catalogue:
    """Overlaps shaped like MedIMeta's: a fundus family, a chest pair, a subject-only pair."""
    return Catalogue(
        [
            DatasetEntry(
                "fundus", "Fundus", "Retinal fundus", (task("fundus"),), domain_overlaps={"glaucoma"}
            ),
            DatasetEntry(
                "glaucoma", "Glaucoma", "Retinal fundus", (task("glaucoma"), task("glaucoma", "other"))
            ),
            DatasetEntry("cxr", "CXR", "Chest X-ray", (task("cxr", "sex"),), subject_overlaps=["pneumonia"]),
            DatasetEntry(
                "pneumonia",
                "Pneumonia",
                "Chest X-ray",
                (
                    task("pneumonia"),
                    task("pneumonia", "class", "MULTICLASS_CLASSIFICATION", ABC),
                ),
            ),
            DatasetEntry("skin_photo", "Photo", "Clinical skin photography", (task("skin_photo"),)),
            DatasetEntry(
                "skin_derm", "Derm", "Dermatoscopy", (task("skin_derm"),), subject_overlaps={"skin_photo"}
            ),
            DatasetEntry("oct", "OCT", "OCT", (task("oct", "grade", "ORDINAL_REGRESSION", LMH),)),
        ]
    )


def test_entries_are_frozen_hashable_and_validated():
    t = task("oct", "grade", "ORDINAL_REGRESSION", LMH)
    assert t.task_target is TaskTarget.ORDINAL_REGRESSION
    assert t.num_classes == 3
    assert t.task_id == "oct/grade"
    assert hash(t) == hash(task("oct", "grade", "ORDINAL_REGRESSION", LMH))
    with pytest.raises(AttributeError, match="cannot assign to field 'task_name'"):
        t.task_name = "x"
    d = t.task_description("OCT")
    assert d == TaskDescription("ORDINAL_REGRESSION", LMH, "oct/grade", "OCT")
    entry = DatasetEntry("oct", "OCT", "OCT", [t], info={"license": "CC"})
    assert isinstance(entry.tasks, tuple)
    assert entry == DatasetEntry("oct", "OCT", "OCT", (t,))  # info is not compared
    assert hash(entry) == hash(DatasetEntry("oct", "OCT", "OCT", (t,)))
    assert pickle.loads(pickle.dumps(small())).ids == small().ids


def test_bad_entries():
    with pytest.raises(ValueError, match="binary task must have class keys"):
        task("a", classes={1: "x", 2: "y"})
    with pytest.raises(ValueError, match="unknown task target"):
        task("a", target="CLUSTERING")
    with pytest.raises(TypeError, match="dataset_id must be a non-empty str"):
        TaskEntry("", "t", "BINARY_CLASSIFICATION", BIN)
    with pytest.raises(ValueError, match="lists task 't' of dataset 'b'"):
        DatasetEntry("a", "A", "X", (task("b"),))
    with pytest.raises(ValueError, match=r"several tasks named \['t'\]"):
        DatasetEntry("a", "A", "X", (task("a"), task("a")))
    with pytest.raises(TypeError, match="TaskEntry values"):
        DatasetEntry("a", "A", "X", ("t",))
    with pytest.raises(TypeError, match="single string"):
        DatasetEntry("a", "A", "X", (), domain_overlaps="b")
    with pytest.raises(TypeError, match="domain must be a str"):
        DatasetEntry("a", "A", None)


def test_bad_catalogues():
    with pytest.raises(ValueError, match="at least one"):
        Catalogue([])
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        Catalogue([DatasetEntry("a", "A", "X"), DatasetEntry("a", "A2", "Y")])
    with pytest.raises(ValueError, match=r"unknown datasets \['zz'\]; known ids: \['a'\]"):
        Catalogue([DatasetEntry("a", "A", "X", subject_overlaps={"zz"})])
    with pytest.raises(TypeError, match="DatasetEntry values"):
        Catalogue(["a"])


def test_lookup_and_listing():
    cat = small()
    assert len(cat) == 7
    assert cat.ids[0] == "fundus"
    assert "oct" in cat
    assert "nope" not in cat
    assert cat.dataset("oct").domain == "OCT"
    assert cat.task("pneumonia", "class").num_classes == 3
    assert cat.task("pneumonia/class") is cat.task("pneumonia", "class")
    assert [t.task_name for t in cat.tasks("glaucoma")] == ["t", "other"]
    assert len(cat.tasks()) == 9
    assert [d.id for d in cat] == list(cat.ids)
    assert "7 datasets, 9 tasks" in repr(cat)


def test_unknown_ids_list_what_exists():
    cat = small()
    with pytest.raises(KeyError, match=r"unknown dataset id 'nope'; known ids: .*'oct'"):
        cat.dataset("nope")
    with pytest.raises(KeyError, match=r"no task 'x'; its tasks are \['t', 'other'\]"):
        cat.task("glaucoma", "x")
    with pytest.raises(KeyError, match="expected a task id"):
        cat.task("glaucoma")
    with pytest.raises(KeyError, match="unknown dataset id"):
        cat.overlapping("nope")
    with pytest.raises(ValueError, match="unknown overlap kinds"):
        cat.overlapping("oct", kinds=("patient",))


def test_overlaps_are_symmetric():
    cat = small()
    assert cat.overlapping("glaucoma") == {"fundus"}
    assert cat.overlapping("fundus") == {"glaucoma"}
    assert cat.overlapping("pneumonia", kinds="subject") == {"cxr"}
    assert cat.overlapping("pneumonia", kinds="domain") == frozenset()
    assert cat.overlaps("skin_photo", "skin_derm")
    assert cat.overlaps("skin_derm", "skin_photo", kinds="subject")
    assert not cat.overlaps("skin_derm", "skin_photo", kinds="domain")
    assert not cat.overlaps("oct", "cxr")


def test_self_overlap_is_ignored():
    entry = DatasetEntry("a", "A", "X", domain_overlaps={"a"})
    assert entry.domain_overlaps == frozenset()


def test_leave_one_out_sources():
    cat = small()
    ids = lambda target, **kw: sorted({t.dataset_id for t in leave_one_out_sources(cat, target, **kw)})  # noqa: E731
    assert ids("glaucoma") == ["cxr", "oct", "pneumonia", "skin_derm", "skin_photo"]
    assert ids("glaucoma/other") == ids("glaucoma")
    assert ids(cat.task("glaucoma", "t")) == ids("glaucoma")
    assert ids("cxr") == ["fundus", "glaucoma", "oct", "skin_derm", "skin_photo"]
    assert ids("skin_derm") == ["cxr", "fundus", "glaucoma", "oct", "pneumonia"]
    # declared overlaps only; or only one kind
    assert "pneumonia" not in ids("cxr", same_domain_name=False)
    assert "pneumonia" in ids("cxr", kinds=("domain",), same_domain_name=False)
    assert "skin_photo" in ids("skin_derm", kinds="domain")
    # all tasks of each source dataset, none of the target's
    sources = leave_one_out_sources(cat, "oct")
    assert [t.task_id for t in sources if t.dataset_id == "pneumonia"] == ["pneumonia/t", "pneumonia/class"]
    assert all(t.dataset_id != "oct" for t in sources)
    kinds = leave_one_out_sources(cat, "oct", task_targets=["MULTICLASS_CLASSIFICATION"])
    assert [t.task_id for t in kinds] == ["pneumonia/class"]


def test_leave_one_out_bad_input():
    cat = small()
    with pytest.raises(KeyError, match="known ids"):
        leave_one_out_sources(cat, "nope")
    with pytest.raises(KeyError, match="no task 'x'"):
        leave_one_out_sources(cat, "oct/x")
    with pytest.raises(TypeError, match="must be a Catalogue"):
        leave_one_out_sources([1], "oct")
    with pytest.raises(ValueError, match="unknown task target"):
        leave_one_out_sources(cat, "oct", task_targets=["NOPE"])


def test_subset_drops_overlaps_with_left_out_datasets():
    cat = small()
    sub = cat.subset(["glaucoma", "oct", "cxr"])
    assert sub.ids == ("glaucoma", "oct", "cxr")
    assert sub.overlapping("glaucoma") == frozenset()
    assert sub.dataset("glaucoma").tasks == cat.dataset("glaucoma").tasks
    # the overlap declared by fundus (left out) is still known while both are present
    both = cat.subset(["glaucoma", "fundus"])
    assert both.overlapping("glaucoma") == {"fundus"}
    with pytest.raises(KeyError, match="unknown dataset id"):
        cat.subset(["oct", "nope"])
