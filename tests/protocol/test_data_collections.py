"""One protocol over several meta-datasets (issue 23, item 5): ``[data] format`` and ``[[data.collections]]``.

The MedIMeta demo data (registered format ``"medimeta"``) is mixed with a small format registered here
for the tests only, ``"test-folders"``: one folder per dataset, one sub-folder per class of PNG files, a
``meta.json`` with the dataset's domain, upstream datasets and splits, read with
``ImageFilesTaskSource`` and split with ``hash_splits``. Whatever a reader registers works the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from torchcross.cli import main
from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.datasets.formats import FORMATS, DataFormat, register_format
from torchcross.datasets.image_files import ImageFilesTaskSource, hash_splits
from torchcross.protocol import check_protocol, run_protocol
from torchcross.protocol.config import config_from_dict, config_to_toml, load_config
from torchcross.protocol.data_collections import load_data, open_data_task
from torchcross.protocol.fingerprint import RESULT_READS, TRAINING_READS, fingerprint
from torchcross.protocol.training import CheckpointMismatchError
from torchcross.tasks.catalogue import DatasetEntry, TaskEntry
from torchcross.tasks.task import TaskDescription


# -- the test-only format --------------------------------------------------------------------------------
def _folders(root: Any) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    for d in sorted(Path(root).iterdir()):
        if d.is_dir() and (d / "meta.json").is_file():
            yield d.name, d, json.loads((d / "meta.json").read_text())


def _files(folder: Path) -> tuple[list[str], list[Path], np.ndarray]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths = [f for c in classes for f in sorted((folder / c).glob("*.png"))]
    labels = np.array([classes.index(p.parent.name) for p in paths])
    return classes, paths, labels


def _scan(root: Any, *, task: str = "class") -> tuple[list[DatasetEntry], dict[str, str]]:
    entries, problems = [], {}
    for d in sorted(Path(root).iterdir()):
        if d.is_dir() and not (d / "meta.json").is_file():
            problems[str(d)] = "no meta.json"
    for name, folder, meta in _folders(root):
        classes, _, _ = _files(folder)
        kind = "BINARY_CLASSIFICATION" if len(classes) == 2 else "MULTICLASS_CLASSIFICATION"
        info = {
            "input_size": None if meta.get("varying") else (3, 16, 16),
            "splits": tuple(meta.get("splits", ("train", "val", "test"))),
            "upstream": tuple(meta.get("upstream", ())),
        }
        tasks = (TaskEntry(name, task, kind, dict(enumerate(classes))),)
        entries.append(DatasetEntry(name, name, meta["domain"], tasks, info=info))
    return entries, problems


def _open(
    root: Any,
    dataset_id: str,
    task_name: str,
    split: str | None,
    *,
    channels: int,
    mean: Any = None,
    std: Any = None,
    image_size: int | None = None,
    task: str = "class",
) -> ImageFilesTaskSource:
    folder = Path(root) / dataset_id
    meta = json.loads((folder / "meta.json").read_text())
    if task_name != task:
        raise ValueError(f"dataset {dataset_id!r} has no task {task_name!r}; its task is {task!r}")
    classes, paths, labels = _files(folder)
    if split is not None:
        if split not in meta.get("splits", ("train", "val", "test")):
            raise ValueError(f"dataset {dataset_id!r} has no split {split!r}")
        keep = hash_splits([p.name for p in paths], salt=dataset_id)[split]
        paths, labels = [paths[i] for i in keep], labels[keep]
    if meta.get("varying") and image_size is None:
        raise ValueError(f"the images of {dataset_id!r} vary in size: set image_size")
    kind = "BINARY_CLASSIFICATION" if len(classes) == 2 else "MULTICLASS_CLASSIFICATION"
    desc = TaskDescription(kind, dict(enumerate(classes)), f"{dataset_id}/{task_name}")
    return ImageFilesTaskSource(
        paths, labels, desc, channels=channels, image_size=image_size, mean=mean, std=std
    )  # type: ignore[arg-type]


def write_folders(
    root: Path, datasets: dict[str, dict[str, Any]], per_class: int = 10, seed: int = 0
) -> Path:
    """One folder per dataset (``{name: meta}``), two classes of ``per_class`` 16x16 PNG files each."""
    rng = np.random.default_rng(seed)
    for name, meta in datasets.items():
        for c, level in (("dark", 60), ("light", 190)):
            (root / name / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                side = 16 + (i % 3) * 4 if meta.get("varying") else 16
                pixels = rng.normal(level, 25, (side, side, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / name / c / f"{name}_{c}_{i}.png")
        (root / name / "meta.json").write_text(json.dumps(meta))
    return root


def _synthetic(root: Any, *, seed: int = 0, per_class: int = 10) -> str:
    write_folders(Path(root), {"synthetic": {"domain": "Photos"}}, per_class, seed)
    return os.fspath(root)


@pytest.fixture
def folders_format() -> Iterator[DataFormat]:
    added = {}
    for name in ("test-folders", "test-folders-copy"):
        added[name] = register_format(
            DataFormat(name, _scan, _open, "test folders", options=("task",), synthetic=_synthetic)
        )
    yield added["test-folders"]
    for name in added:
        FORMATS.pop(name, None)


FOLDERS = {
    "pets": {"domain": "Photos", "upstream": ["Oxford-Pets"]},
    "pet-drawings": {"domain": "Drawings", "upstream": ["oxford-pets"]},
    "leaves": {"domain": "Plants"},
}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("demo") / "medimeta", size=16)


@pytest.fixture(scope="module")
def folders_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folders(tmp_path_factory.mktemp("folders") / "folders", FOLDERS)


TINY: dict[str, dict[str, Any]] = {
    "evaluation": {"n_episodes": 2, "methods": ["IM-PT"], "n_shot": 2, "n_query": 2},
    "backbone": {"name": "conv4", "hidden": 8, "weights": "random"},
    "augmentation": {"enabled": False},
    "pretrain": {"steps": 2, "batch_size": 4, "patience": 0},
    "finetune": {"steps": 2, "freeze_backbone": True},
    "run": {"plot": False, "num_threads": 1},
}


def _mixed(demo: Path, folders: Path, out: Path, data: dict[str, Any] | None = None, **sections: Any) -> dict:
    raw: dict[str, Any] = {name: dict(values) for name, values in TINY.items()}
    raw["data"] = {
        "targets": ["digits_scan_a/even digit", "f-pets"],
        "min_class_size": 0,
        "collections": [
            {"root": str(demo), "format": "medimeta"},
            {"root": str(folders), "format": "test-folders", "prefix": "f-"},
        ],
        "overlaps": [["f-leaves", "digits_defocus"]],
        **(data or {}),
    }
    raw["run"]["out_dir"] = str(out)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


# -- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (
            {"root": "d", "collections": [{"root": "e"}]},
            ValueError,
            r"sets both root and \[\[data.collections",
        ),
        ({}, ValueError, r"needs the key 'root' .* or \[\[data.collections\]\]"),
        (
            {"root": "d", "format": "test-folder"},
            ValueError,
            r"unknown data format 'test-folder'.*'test-folders'",
        ),
        ({"collections": [{"root": "d", "format": "meta"}]}, ValueError, r"#1 format: unknown data format"),
        ({"collections": [{"format": "medimeta"}]}, ValueError, r"#1 needs the key 'root'"),
        ({"collections": [{"root": "d", "size": 3}]}, ValueError, r"unknown key 'size' in \[\[data.coll"),
        (
            {"collections": [{"root": "d", "format": "test-folders", "tsk": "x"}]},
            ValueError,
            r"options: task",
        ),
        ({"collections": {"root": "d"}}, TypeError, r"list of tables \(in TOML: one \[\[data.collections"),
        ({"collections": [{"root": "d", "prefix": "a/"}]}, TypeError, r"prefix must be a string without '/'"),
        ({"collections": [{"root": "d", "format": "test-folders", "task": {}}]}, TypeError, r"task must be"),
        ({"root": "d", "overlaps": [["a"]]}, TypeError, r"overlaps must be a list of lists of two or more"),
    ],
)
def test_bad_data_sections_name_the_problem(
    folders_format: DataFormat, data: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        config_from_dict({"data": {"targets": "t", **data}, "run": {"out_dir": "o"}})


def test_collections_default_to_data_format_and_read_back_from_toml(folders_format: DataFormat) -> None:
    import tomllib

    raw = {
        "data": {
            "targets": "t",
            "format": "test-folders",
            "collections": [
                {"root": "a", "task": "kind"},
                {"root": "/b", "format": "medimeta", "prefix": "m-"},
            ],
        },
        "run": {"out_dir": "o"},
    }
    config = config_from_dict(raw, base_dir="/cfg")
    first, second = config.data.collections
    assert (first.root, first.format, first.options) == (Path("/cfg/a"), "test-folders", (("task", "kind"),))
    assert (second.root, second.format, second.prefix) == (Path("/b"), "medimeta", "m-")
    text = config_to_toml(config)
    assert "[[data.collections]]" in text
    assert "# root = (unset)" in text
    assert config_from_dict(tomllib.loads(text)).data == config.data


def test_relative_roots_resolve_against_the_config_file_folder(
    folders_format: DataFormat, tmp_path: Path
) -> None:
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "mix.toml"
    path.write_text(
        '[data]\ntargets = ["t"]\n\n[[data.collections]]\nroot = "../data/medimeta"\n\n'
        '[[data.collections]]\nroot = "folders"\nformat = "test-folders"\n\n[run]\nout_dir = "out"\n'
    )
    roots = [c.root for c in load_config(path).data.collections]
    assert roots == [tmp_path / "configs" / ".." / "data" / "medimeta", tmp_path / "configs" / "folders"]


# -- one catalogue ----------------------------------------------------------------------------------------
def test_one_catalogue_from_two_formats_with_upstream_and_declared_overlaps(
    folders_format: DataFormat, demo_root: Path, folders_root: Path, tmp_path: Path
) -> None:
    config = config_from_dict(_mixed(demo_root, folders_root, tmp_path / "out"))
    data = load_data(config.data)
    assert set(data.catalogue.ids) == {
        "digits_scan_a", "digits_scan_b", "digits_negative", "digits_defocus",
        "f-pets", "f-pet-drawings", "f-leaves",
    }  # fmt: skip
    assert data.locations["f-pets"].format == "test-folders"
    assert data.locations["f-pets"].dataset_id == "pets"
    assert data.locations["digits_defocus"].format == "medimeta"
    cat = data.catalogue
    assert cat.overlaps("f-pets", "f-pet-drawings", ("subject",))  # upstream names match ignoring case
    assert cat.overlaps("digits_defocus", "f-leaves", ("subject",))  # declared
    assert not cat.overlaps("f-pets", "f-leaves")
    assert data.notes == (
        "subject overlap (shared upstream 'oxford-pets'): f-pet-drawings, f-pets",
        "subject overlap (declared in [data] overlaps): f-leaves, digits_defocus",
    )


def test_a_dataset_id_in_two_collections_asks_for_a_prefix(
    folders_format: DataFormat, folders_root: Path, tmp_path: Path
) -> None:
    raw = _mixed(folders_root, folders_root, tmp_path / "out")
    raw["data"]["collections"] = [
        {"root": str(folders_root), "format": "test-folders"},
        {"root": str(folders_root), "format": "test-folders-copy"},
    ]
    raw["data"]["overlaps"] = []
    with pytest.raises(
        ValueError, match=r"dataset id 'leaves' is in \[\[data.collections\]\] #1 .* #2 .*set pre"
    ):
        load_data(config_from_dict(raw).data)
    raw["data"]["overlaps"] = [["leaves", "pots"]]
    raw["data"]["collections"][1]["prefix"] = "copy-"
    with pytest.raises(ValueError, match=r"\[data\] overlaps names the unknown dataset 'pots'"):
        load_data(config_from_dict(raw).data)


def test_a_missing_collection_root_is_named(
    folders_format: DataFormat, demo_root: Path, tmp_path: Path
) -> None:
    raw = _mixed(demo_root, tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"\[\[data.collections\]\] #2 \(test-folders, .*nowhere"):
        check_protocol(config_from_dict(raw))


def test_open_data_task_dispatches_to_the_format_of_the_dataset(
    folders_format: DataFormat, demo_root: Path, folders_root: Path, tmp_path: Path
) -> None:
    data = config_from_dict(_mixed(demo_root, folders_root, tmp_path / "out")).data
    pets = open_data_task(data, "f-pets", "class", "all", channels=3, image_size=8, normalize="half")
    digits = open_data_task(data, "digits_scan_a", "even digit", "train", channels=3, image_size=8)
    assert pets.task_description.task_identifier == "f-pets/class"  # the merged catalogue's id
    x, y = pets.get_batch([0, 19])
    assert x.shape == (2, 3, 8, 8)  # resized
    assert y.flatten().tolist() == [0, 1]
    assert x.min() < 0  # normalised
    assert digits.get_batch([0])[0].shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"unknown dataset 'f-cats'"):
        open_data_task(data, "f-cats", "class", "all", channels=3, image_size=8)


# -- the plan ---------------------------------------------------------------------------------------------
def test_check_prints_the_leave_one_out_plan_of_a_mixed_config(
    folders_format: DataFormat,
    demo_root: Path,
    folders_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = _mixed(
        demo_root,
        folders_root,
        tmp_path / "out",
        {"targets": ["digits_scan_a/even digit", "f-pets", "f-leaves"]},
    )
    lines = ["[data]", 'targets = ["digits_scan_a/even digit", "f-pets", "f-leaves"]', "min_class_size = 0"]
    lines += ['overlaps = [["f-leaves", "digits_defocus"]]']
    for c in raw["data"]["collections"]:
        lines += ["", "[[data.collections]]", *(f"{k} = {json.dumps(v)}" for k, v in c.items())]
    for name in ("evaluation", "backbone", "run"):
        lines += ["", f"[{name}]", *(f"{k} = {json.dumps(v)}" for k, v in raw[name].items())]
    path = tmp_path / "mix.toml"
    path.write_text("\n".join(lines) + "\n")
    assert main(["run", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "data collection #1: medimeta at " in out
    assert "data collection #2: test-folders at " in out
    assert "(dataset ids prefixed 'f-')" in out
    assert "subject overlap (shared upstream 'oxford-pets'): f-pet-drawings, f-pets" in out
    assert "left out: ['digits_scan_b'] (digits_scan_b: domain)" in out
    assert "left out: ['f-pet-drawings'] (f-pet-drawings: upstream 'oxford-pets')" in out
    assert "(digits_defocus: declared in [data] overlaps)" in out
    target = next(line for line in out.splitlines() if line.startswith("target f-pets"))
    assert "'digits_negative'" in target  # sources from both formats
    assert "'f-leaves'" in target


def test_varying_image_sizes_need_data_image_size(
    folders_format: DataFormat, demo_root: Path, tmp_path: Path
) -> None:
    root = write_folders(tmp_path / "varying", {"mixed": {"domain": "Photos", "varying": True}}, per_class=3)
    raw = _mixed(demo_root, root, tmp_path / "out", {"targets": ["f-mixed"], "overlaps": []})
    with pytest.raises(ValueError, match=r"the images of 'f-mixed' vary in size; set \[data\] image_size"):
        check_protocol(config_from_dict(raw))
    raw["data"]["image_size"] = 16
    assert check_protocol(config_from_dict(raw)).image_size == 16


def test_a_split_a_dataset_lacks_is_named_with_what_reads_it(
    folders_format: DataFormat, demo_root: Path, tmp_path: Path
) -> None:
    root = write_folders(tmp_path / "tests", {"exam": {"domain": "Photos", "splits": ["test"]}}, per_class=3)
    raw = _mixed(
        demo_root, root, tmp_path / "out", {"targets": ["f-exam"], "overlaps": [], "target_split": "val"}
    )
    with pytest.raises(
        ValueError,
        match=r"target dataset 'f-exam' has no 'val' split \(its splits: \['test'\]\), which \[data\] ",
    ):
        check_protocol(config_from_dict(raw))
    raw["data"].update(targets=["digits_scan_a/even digit"], target_split="all")
    raw["evaluation"]["methods"] = ["mm-PT"]
    with pytest.raises(
        ValueError,
        match=r"source dataset 'f-exam' has no 'train' split .* which method 'mm-PT' \(its source split\)",
    ):
        check_protocol(config_from_dict(raw))


# -- runs ---------------------------------------------------------------------------------------------------
def test_a_tiny_run_over_two_formats_writes_results(
    folders_format: DataFormat, demo_root: Path, folders_root: Path, tmp_path: Path
) -> None:
    config = config_from_dict(_mixed(demo_root, folders_root, tmp_path / "out"))
    result = run_protocol(config, progress=False, log=None)
    records = result.episodes.to_records()
    assert {r["target"] for r in records} == {"digits_scan_a/even digit", "f-pets/class"}
    assert all(r["method"] == "scratch" for r in records)  # IM-PT with random weights
    assert (tmp_path / "out" / "results.csv").is_file()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["config"]["data"]["collections"][1]["format"] == "test-folders"


def test_the_fingerprint_covers_the_formats_not_where_the_data_lies(
    folders_format: DataFormat, demo_root: Path, folders_root: Path, tmp_path: Path
) -> None:
    def stamp(raw: dict[str, Any]) -> str:
        return fingerprint(config_from_dict(raw), RESULT_READS, target="t")

    base = _mixed(demo_root, folders_root, tmp_path / "out")
    moved = _mixed(demo_root, tmp_path / "copy", tmp_path / "out")
    other = _mixed(demo_root, folders_root, tmp_path / "out")
    other["data"]["collections"][1]["format"] = "test-folders-copy"
    option = _mixed(demo_root, folders_root, tmp_path / "out")
    option["data"]["collections"][1]["task"] = "kind"
    assert stamp(base) == stamp(moved)
    assert len({stamp(base), stamp(other), stamp(option)}) == 3
    plain = {"data": {"root": "d", "targets": "t"}, "run": {"out_dir": "o"}}
    other_format = {"data": {"root": "d", "targets": "t", "format": "test-folders"}, "run": {"out_dir": "o"}}
    assert "format" not in json.dumps(fingerprint(config_from_dict(plain), TRAINING_READS))
    assert fingerprint(config_from_dict(plain), TRAINING_READS) != fingerprint(
        config_from_dict(other_format), TRAINING_READS
    )


def test_resuming_with_another_format_is_refused(
    folders_format: DataFormat, demo_root: Path, folders_root: Path, tmp_path: Path
) -> None:
    sections = {"evaluation": {"methods": ["mm-PT"]}}
    raw = _mixed(
        demo_root, folders_root, tmp_path / "out", {"targets": ["digits_scan_a/even digit"]}, **sections
    )
    run_protocol(config_from_dict(raw), progress=False, log=None)
    raw["data"]["collections"][1]["format"] = "test-folders-copy"  # the same files, read by another format
    with pytest.raises(CheckpointMismatchError, match=r"changed: data\.collections"):
        run_protocol(config_from_dict(raw), progress=False, log=None)


def test_root_and_format_is_the_one_collection_shorthand(
    folders_format: DataFormat, folders_root: Path, tmp_path: Path
) -> None:
    from torchcross.protocol.data import load_catalogue

    catalogue, problems = load_catalogue(folders_root, "test-folders")
    assert catalogue.ids == ("leaves", "pet-drawings", "pets")
    assert problems == {}
    raw = {**TINY, "data": {"root": str(folders_root), "format": "test-folders", "targets": ["pets"]}}
    raw["data"]["min_class_size"] = 0
    raw["run"] = {**TINY["run"], "out_dir": str(tmp_path / "out")}
    plan = check_protocol(config_from_dict(raw))
    assert f"data root: {folders_root.resolve()} (test-folders)" in plan.describe()
    assert "left out: ['pet-drawings'] (pet-drawings: upstream 'oxford-pets')" in plan.describe()
    assert (plan.in_channels, plan.image_size) == (3, 16)
