"""Meta-Album folders: classes, kinds, images as written, stable splits, episodes, the formats registry, and
every malformed folder refused with an error naming the file, line or column."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchcross.data.metadataset import sample_episode_set
from torchcross.datasets.formats import get_format
from torchcross.datasets.meta_album import (
    META_ALBUM_DATASETS,
    META_ALBUM_DOMAINS,
    MetaAlbum,
    list_meta_album,
    open_meta_album,
    scan_meta_album,
    write_synthetic_meta_album,
)
from torchcross.tasks.catalogue import Catalogue, leave_one_out_sources


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return Path(write_synthetic_meta_album(tmp_path_factory.mktemp("ma"), num_classes=4, images_per_class=10))


@pytest.fixture
def folder(tmp_path):
    """One writable dataset folder (PLK_Micro), fresh per test."""
    write_synthetic_meta_album(tmp_path, datasets=["PLK_Micro"], num_classes=3, images_per_class=4)
    return tmp_path / "PLK_Micro"


def _rows(folder):
    with open(folder / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _write_rows(folder, rows):
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def test_catalogue_has_ten_domains_of_three_released_datasets_each():
    assert len(META_ALBUM_DOMAINS) == 10
    assert len(META_ALBUM_DATASETS) == 30
    for domain in META_ALBUM_DOMAINS:
        assert sum(d.domain == domain for d in META_ALBUM_DATASETS.values()) == 3
    for s in (0, 1, 2):  # one dataset per domain and set
        assert [META_ALBUM_DATASETS[i].domain for i in list_meta_album(s)] == list(META_ALBUM_DOMAINS)
    assert list_meta_album(0, "Extended")[3] == "PLT_VIL_Extended"
    assert "plantvillage" in META_ALBUM_DATASETS["PLT_VIL"].upstream
    with pytest.raises(ValueError, match="unknown Meta-Album set 7"):
        list_meta_album(7)
    with pytest.raises(ValueError, match="unknown Meta-Album size 'Big'"):
        list_meta_album(size="Big")  # type: ignore[arg-type]


def test_scan_entries_tasks_domains_overlaps_and_the_registry_round_trip(root):
    entries, problems = scan_meta_album(root)
    assert problems == {}
    by_id = {e.id: e for e in entries}
    assert sorted(by_id) == ["BRD_Micro", "DOG_Micro", "FLW_Micro"]
    brd = by_id["BRD_Micro"]
    assert (brd.name, brd.domain) == ("Birds", "Large Animals")
    assert brd.domain_overlaps == {"DOG_Micro"}
    assert by_id["FLW_Micro"].domain_overlaps == frozenset()
    cat, sup = brd.tasks
    assert (cat.task_name, cat.task_target.name, dict(cat.classes)) == (
        "category",
        "MULTICLASS_CLASSIFICATION",
        {0: "class 0", 1: "class 1", 2: "class 2", 3: "class 3"},
    )
    assert (sup.task_name, sup.task_target.name, dict(sup.classes)) == (
        "super_category",
        "BINARY_CLASSIFICATION",
        {0: "group 0", 1: "group 1"},
    )
    assert brd.info["splits"] == ("train", "val", "test")
    assert brd.info["input_size"] == (3, 32, 32)
    assert by_id["FLW_Micro"].info["upstream"] == ("oxford-flowers-102", "vgg_flower")
    # leave-one-out for a bird target excludes the other large-animal dataset
    cat_ = Catalogue(entries)
    assert {t.dataset_id for t in leave_one_out_sources(cat_, "BRD_Micro")} == {"FLW_Micro"}
    fmt = get_format("meta-album")
    assert [e.id for e in fmt.scan(root)[0]] == [e.id for e in entries]
    src = fmt.open(root, "DOG_Micro", "super_category", "val", channels=1, mean=None, std=None, image_size=8)
    assert src.task_description.task_identifier == "DOG_Micro/super_category"
    assert src.task_description.domain_identifier == "Large Animals"
    assert src.get_batch([0, 1])[0].shape == (2, 1, 8, 8)
    # a root that is itself one dataset folder
    assert [e.id for e in scan_meta_album(os.path.join(root, "FLW_Micro"))[0]] == ["FLW_Micro"]
    assert len(open_meta_album(os.path.join(root, "FLW_Micro"), "FLW_Micro", "category", None)) == 40


def test_images_and_labels_equal_what_was_written(root):
    src = MetaAlbum(os.path.join(root, "BRD_Micro"), output="uint8")
    rows = _rows(root / "BRD_Micro")[1:]
    x, y = src.get_batch(range(len(rows)))
    for i, (name, category, _) in enumerate(rows):
        ref = np.array(Image.open(root / "BRD_Micro" / "images" / name))
        assert torch.equal(x[i].permute(1, 2, 0), torch.from_numpy(ref))
        assert src.task_description.classes[int(y[i])] == category


def test_splits_partition_the_images_and_are_stable(root, tmp_path):
    parts = [MetaAlbum(os.path.join(root, "BRD_Micro"), split=s) for s in ("train", "val", "test")]
    names = [sorted(os.path.basename(p) for p in s.paths) for s in parts]
    assert sum(len(n) for n in names) == 40
    assert len(set(names[0]) | set(names[1]) | set(names[2])) == 40
    assert len(names[0]) > len(names[1])
    # the same files in a shuffled CSV of another version of the dataset: the same splits
    copy = tmp_path / "BRD_Mini"
    shutil.copytree(root / "BRD_Micro", copy)
    rows = _rows(copy)
    _write_rows(copy, [rows[0], *rows[:0:-1]])
    again = [
        sorted(os.path.basename(p) for p in MetaAlbum(copy, split=s).paths) for s in ("train", "val", "test")
    ]
    assert again == names
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        MetaAlbum(copy, split="dev")
    with pytest.raises(ValueError, match="has no task 'colour'; its tasks are"):
        MetaAlbum(copy, task="colour")


def test_episodes_from_a_meta_album_source(root):
    src = MetaAlbum(os.path.join(root, "FLW_Micro"), image_size=16)
    episodes = sample_episode_set(src, n_episodes=3, n_shot=2, n_query=2, n_way=3)
    ep = episodes.episodes[0]
    assert len(ep.support) == 6
    assert len(ep.query) == 6
    x, _ = src.get_batch(ep.support)
    assert x.shape == (6, 3, 16, 16)


def test_column_names_from_info_json_tab_separated_and_images_beside_the_csv(folder):
    rows = _rows(folder)
    for name in os.listdir(folder / "images"):
        shutil.move(folder / "images" / name, folder / name)
    os.rmdir(folder / "images")
    with open(folder / "labels.csv", "w", encoding="utf-8") as f:
        f.write("\n".join("\t".join(r) for r in [["path", "species", "order"], *rows[1:]]))
    info = json.loads((folder / "info.json").read_text())
    info.update(
        image_column_name="path",
        category_column_name="species",
        super_category_column_name="order",
        images_in_sub_folder=False,
        csv_with_tab=True,
    )
    (folder / "info.json").write_text(json.dumps(info))
    src = MetaAlbum(folder, task="super_category")
    assert len(src) == 12
    assert src.task_description.classes == {0: "group 0", 1: "group 1"}
    info["has_super_categories"] = False
    (folder / "info.json").write_text(json.dumps(info))
    assert [t.task_name for t in scan_meta_album(folder)[0][0].tasks] == ["category"]


def test_columns_that_do_not_match_info_json(folder):
    rows = _rows(folder)
    _write_rows(folder, [["FILE", "CATEGORY", "SUPER_CATEGORY"], *rows[1:]])
    with pytest.raises(ValueError, match=r"labels.csv has the columns \['FILE'.*image column 'FILE_NAME'"):
        MetaAlbum(folder)
    entries, problems = scan_meta_album(folder.parent)
    assert entries == []
    assert "image column 'FILE_NAME'" in problems[str(folder)]


def test_missing_image(folder):
    os.remove(folder / "images" / "plk_micro_1_2.png")
    with pytest.raises(
        ValueError, match=r"line 8 lists the image 'plk_micro_1_2.png', which is not in .*1 of 12"
    ):
        MetaAlbum(folder)


def test_duplicate_file_names(folder):
    rows = _rows(folder)
    _write_rows(folder, [*rows, rows[2]])
    with pytest.raises(ValueError, match=r"lines 3 and 14 both list the file 'plk_micro_0_1.png'"):
        MetaAlbum(folder)


def test_unknown_category_in_a_row(folder):
    rows = _rows(folder)
    rows[5][1] = "class 9"
    _write_rows(folder, rows)
    with pytest.raises(
        ValueError,
        match=r"4 categories but info.json declares total_categories = 3.*'class 9' \(first at line 6\)",
    ):
        MetaAlbum(folder)
    info = json.loads((folder / "info.json").read_text())
    info["categories"] = ["class 0", "class 1", "class 2"]
    (folder / "info.json").write_text(json.dumps(info))
    with pytest.raises(
        ValueError, match=r"line 6: category 'class 9' is not one of the 3 categories info.json"
    ):
        MetaAlbum(folder)
    rows[5][1] = ""
    _write_rows(folder, rows)
    with pytest.raises(ValueError, match=r"line 6: the CATEGORY column is empty for 'plk_micro_1_0.png'"):
        MetaAlbum(folder)


def test_info_json_not_utf8_or_malformed(folder):
    (folder / "info.json").write_bytes('{"dataset_name": "Pl\u00e4nkton"}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"info.json is not UTF-8 text.*save it as UTF-8"):
        MetaAlbum(folder)
    (folder / "info.json").write_text('{"dataset_name": "x",}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"info.json is not valid JSON: .* line 1, column 22"):
        MetaAlbum(folder)
    (folder / "info.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        MetaAlbum(folder)
    (folder / "info.json").unlink()
    with pytest.raises(ValueError, match=r"info\.json is missing"):
        MetaAlbum(folder)


def test_empty_csv(folder):
    (folder / "labels.csv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"labels.csv is empty; it needs a header row"):
        MetaAlbum(folder)
    (folder / "labels.csv").write_text("FILE_NAME,CATEGORY,SUPER_CATEGORY\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"has a header \['FILE_NAME', 'CATEGORY', 'SUPER_CATEGORY'\] but no rows"
    ):
        MetaAlbum(folder)


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "images/../../x.png", "..\\x.png"])
def test_file_names_outside_the_folder_are_refused(folder, name):
    (folder.parent / "outside.png").write_bytes(b"")
    rows = _rows(folder)
    rows[3][0] = name
    _write_rows(folder, rows)
    with pytest.raises(ValueError, match=r"line 4: file name .* points outside the dataset folder"):
        MetaAlbum(folder)


def test_open_and_scan_errors(root, tmp_path):
    with pytest.raises(ValueError, match="no Meta-Album dataset folder named 'CRS_Micro'"):
        open_meta_album(root, "CRS_Micro", "category", None)
    with pytest.raises(ValueError, match="is not a folder"):
        scan_meta_album(tmp_path / "nothing")
    # two folders with one name in different sub-folders: the second is a problem, not a silent merge
    write_synthetic_meta_album(tmp_path / "a", datasets=["TEX_Mini"], images_per_class=2)
    write_synthetic_meta_album(tmp_path / "b", datasets=["TEX_Mini"], images_per_class=2)
    entries, problems = scan_meta_album(tmp_path)
    assert [e.id for e in entries] == ["TEX_Mini"]
    assert list(problems.values()) == [
        "a second dataset folder named 'TEX_Mini'; rename one (ids are folder names)"
    ]


def test_the_registered_synthetic_writer_writes_a_scannable_root(tmp_path):
    root = get_format("meta-album").synthetic(tmp_path, seed=1, datasets=["MD_MIX_Micro"], images_per_class=2)
    (entry,), problems = get_format("meta-album").scan(root)
    assert problems == {}
    assert (entry.id, entry.domain, entry.name) == ("MD_MIX_Micro", "OCR", "OmniPrint-MD-mix")
