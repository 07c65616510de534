"""Meta-Album dataset folders as task sources, and the catalogue of Meta-Album's datasets and domains.

Meta-Album (Ullah et al., NeurIPS 2022 Datasets and Benchmarks, https://meta-album.github.io/) ships each
dataset as a folder in the layout its repository documents (``DataFormat/README.md`` and the examples
``DataFormat/mini_insect_*`` of github.com/ihsaan-ullah/meta-album, which this reader follows):

- ``labels.csv``: one row per image, with the columns ``FILE_NAME``, ``CATEGORY`` and
  ``SUPER_CATEGORY``, or the names that ``info.json`` declares;
- ``info.json``: ``dataset_name``, ``dataset_description``, ``total_categories``,
  ``has_super_categories``, ``image_column_name``, ``category_column_name``,
  ``super_category_column_name``, and optionally ``images_in_sub_folder`` and ``csv_with_tab`` (the
  keys of the repository's examples); ``dataset_domain`` or ``domain`` (ours) names the domain of a
  dataset that is not in the catalogue;
- the images, in the folder itself or in its ``images/`` sub-folder (128x128 RGB in the released
  datasets).

Each dataset has a multi-class task ``"category"`` and, where ``has_super_categories`` is true, a second
task ``"super_category"``. Class keys follow the sorted class names. Meta-Album has no official image
splits: ``hash_splits()`` of ``torchcross.datasets.image_files`` gives each image a train/val/test split
(70/15/15, ours) from its file name salted with the dataset's Meta-Album id, so the Micro, Mini and
Extended versions of one dataset put a shared image in the same split.

The catalogue ([`META_ALBUM_DATASETS`][META_ALBUM_DATASETS]) holds the 30 datasets released in Meta-Album's
sets 0, 1 and 2 (10 domains, one dataset of each domain per set), with the names and domains of the
Meta-Album paper's dataset table and of the repository's ``Datasets/README.md``; the 10 datasets announced
for a fourth set are not listed (their ids are unknown to us), and any dataset outside the catalogue is
read with the domain its ``info.json`` declares. Datasets of one domain declare each other as domain
overlaps, so leave-one-out never trains on a target's own domain; the versions of one dataset (e.g.
``BRD_Mini`` and ``BRD_Micro``) share images and declare subject overlaps.

Examples:
    >>> import tempfile
    >>> root = write_synthetic_meta_album(tempfile.mkdtemp())
    >>> entries, problems = scan_meta_album(root)
    >>> [(e.id, e.domain) for e in entries]
    [('BRD_Micro', 'Large Animals'), ('DOG_Micro', 'Large Animals'), ('FLW_Micro', 'Plants')]
    >>> src = MetaAlbum(f"{root}/BRD_Micro", split="train", image_size=16)
    >>> src.task_description.task_identifier, src.get_batch([0])[0].shape
    ('BRD_Micro/category', torch.Size([1, 3, 16, 16]))
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from torchcross.datasets._images import Stats
from torchcross.datasets.image_files import ImageFilesTaskSource, hash_splits
from torchcross.tasks.catalogue import DatasetEntry, TaskEntry
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "META_ALBUM_DATASETS",
    "META_ALBUM_DOMAINS",
    "MetaAlbum",
    "MetaAlbumDataset",
    "list_meta_album",
    "open_meta_album",
    "scan_meta_album",
    "write_synthetic_meta_album",
]

META_ALBUM_DOMAINS = (
    "Large Animals",
    "Small Animals",
    "Plants",
    "Plant Diseases",
    "Microscopy",
    "Remote Sensing",
    "Vehicles",
    "Manufacturing",
    "Human Actions",
    "OCR",
)
"""Meta-Album's 10 domains, in its order (``OCR``: optical character recognition)."""

SIZES = ("Micro", "Mini", "Extended")
"""The three versions of every Meta-Album dataset (Micro ⊂ Mini ⊂ Extended)."""


@dataclass(frozen=True)
class MetaAlbumDataset:
    """One dataset of Meta-Album's catalogue.

    Attributes:
        id: Meta-Album's id (e.g. ``"PLT_VIL"``); folders are named ``<id>_<size>`` or ``<id>``.
        name: the dataset's name.
        domain: one of [`META_ALBUM_DOMAINS`][META_ALBUM_DOMAINS].
        set: the release set (0, 1 or 2).
        upstream: lower-case names of the public datasets its images come from (``info["upstream"]``).
    """

    id: str
    name: str
    domain: str
    set: int
    upstream: tuple[str, ...] = ()


def _ds(id: str, name: str, domain: int, set: int, *upstream: str) -> MetaAlbumDataset:
    return MetaAlbumDataset(id, name, META_ALBUM_DOMAINS[domain], set, upstream)


META_ALBUM_DATASETS: Mapping[str, MetaAlbumDataset] = {
    d.id: d
    for d in (
        _ds("BRD", "Birds", 0, 0, "birds-525"),
        _ds("DOG", "Dogs", 0, 1, "stanford-dogs"),
        _ds("AWA", "Animals with Attributes", 0, 2, "awa2"),
        _ds("PLK", "Plankton", 1, 0, "whoi-plankton"),
        _ds("INS_2", "Insects 2", 1, 1, "ip102"),
        _ds("INS", "Insects", 1, 2, "spipoll"),
        _ds("FLW", "Flowers", 2, 0, "oxford-flowers-102", "vgg_flower"),
        _ds("PLT_NET", "PlantNet", 2, 1, "plantnet-300k"),
        _ds("FNG", "Fungi", 2, 2, "danish-fungi-2020"),
        _ds("PLT_VIL", "PlantVillage", 3, 0, "plantvillage", "cropdisease"),
        _ds("MED_LF", "Medicinal Leaf", 3, 1, "medicinal-leaf"),
        _ds("PLT_DOC", "PlantDoc", 3, 2, "plantdoc"),
        _ds("BCT", "Bacteria", 4, 0, "dibas"),
        _ds("PNU", "PanNuke", 4, 1, "pannuke"),
        _ds("PRT", "Subcellular Human Protein", 4, 2, "human-protein-atlas"),
        _ds("RESISC", "RESISC", 5, 0, "nwpu-resisc45"),
        _ds("RSICB", "RSICB", 5, 1, "rsi-cb"),
        _ds("RSD", "RSD", 5, 2, "rsd46-whu"),
        _ds("CRS", "Cars", 6, 0, "stanford-cars"),
        _ds("APL", "Airplanes", 6, 1, "mtarsi"),
        _ds("BTS", "Boats", 6, 2, "marvel"),
        _ds("TEX", "Textures", 7, 0),
        _ds("TEX_DTD", "Textures DTD", 7, 1, "dtd"),
        _ds("TEX_ALOT", "Textures ALOT", 7, 2, "alot"),
        _ds("SPT", "Sports", 8, 0),
        _ds("ACT_40", "Stanford 40 Actions", 8, 1, "stanford-40-actions"),
        _ds("ACT_410", "MPII Human Pose", 8, 2, "mpii-human-pose"),
        _ds("MD_MIX", "OmniPrint-MD-mix", 9, 0),
        _ds("MD_5_BIS", "OmniPrint-MD-5-bis", 9, 1),
        _ds("MD_6", "OmniPrint-MD-6", 9, 2),
    )
}
"""Meta-Album's released datasets by id (sets 0-2; see the module docstring for the source)."""


def list_meta_album(
    set: int | None = None, size: Literal["Micro", "Mini", "Extended"] | None = None
) -> list[str]:
    """The catalogued datasets of one release ``set`` (all when ``None``), in domain order.

    With ``size``, the names of that version's folders (``"BRD_Mini"``); without, Meta-Album's ids.

    Raises:
        ValueError: an unknown set or size.

    Examples:
        >>> list_meta_album(0, "Mini")[:3]
        ['BRD_Mini', 'PLK_Mini', 'FLW_Mini']
        >>> len(list_meta_album())
        30
    """
    sets = sorted({d.set for d in META_ALBUM_DATASETS.values()})
    if set is not None and set not in sets:
        raise ValueError(f"unknown Meta-Album set {set!r}; the catalogue has sets {sets}")
    if size is not None and size not in SIZES:
        raise ValueError(f"unknown Meta-Album size {size!r}; use one of {list(SIZES)}")
    ids = [
        d.id
        for d in sorted(
            META_ALBUM_DATASETS.values(), key=lambda d: (META_ALBUM_DOMAINS.index(d.domain), d.set)
        )
        if set is None or d.set == set
    ]
    return ids if size is None else [f"{i}_{size}" for i in ids]


def _catalogue_id(folder_name: str, info: Mapping[str, Any]) -> str:
    """Meta-Album's id of a dataset folder: ``info["dataset_id"]`` or the folder name less its size."""
    declared = info.get("dataset_id")
    if isinstance(declared, str) and declared:
        folder_name = declared
    for size in SIZES:
        if folder_name.endswith(f"_{size}"):
            return folder_name[: -len(size) - 1]
    return folder_name


def _read_info(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, "info.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(
            f"{path} is missing; a Meta-Album dataset folder has info.json and labels.csv"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; fix the file "
            "(a trailing comma is a common cause)"
        ) from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(info).__name__}")
    for key in ("image_column_name", "category_column_name", "super_category_column_name"):
        if key in info and not isinstance(info[key], str):
            raise ValueError(f"{path}: {key} must be a string, got {info[key]!r}")
    return info


@dataclass(frozen=True)
class _Folder:
    """What a dataset folder holds, validated: its files, classes and per-row labels."""

    path: str
    id: str
    catalogue_id: str
    info: dict[str, Any]
    image_dir: str
    files: list[str]
    classes: dict[str, list[str]]  # task name -> sorted class names
    labels: dict[str, np.ndarray]  # task name -> class index per row

    @property
    def domain(self) -> str:
        known = META_ALBUM_DATASETS.get(self.catalogue_id)
        if known is not None:
            return known.domain
        declared = self.info.get("dataset_domain", self.info.get("domain"))
        return declared if isinstance(declared, str) and declared else f"Meta-Album {self.catalogue_id}"


def _read_rows(path: str, delimiter: str) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise ValueError(
            f"{path} is missing; a Meta-Album dataset folder has info.json and labels.csv"
        ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True) if r]
    if not rows:
        raise ValueError(
            f"{path} is empty; it needs a header row (e.g. FILE_NAME,CATEGORY,SUPER_CATEGORY) and one row "
            "per image"
        )
    header = [h.strip() for h in rows[0]]
    if len(rows) == 1:
        raise ValueError(f"{path} has a header {header} but no rows; add one row per image")
    return header, [[c.strip() for c in r] for r in rows[1:]]


def _safe_name(name: str, csv_path: str, line: int) -> str:
    norm = name.replace("\\", "/")
    if not norm or os.path.isabs(name) or norm.startswith("/") or ".." in norm.split("/") or ":" in norm:
        raise ValueError(
            f"{csv_path} line {line}: file name {name!r} points outside the dataset folder; file names must "
            "be relative to the folder (or its images/ sub-folder), without '..'"
        )
    return norm


def _read_folder(folder: str) -> _Folder:
    folder = os.path.abspath(os.fspath(folder))
    info = _read_info(folder)
    csv_path = os.path.join(folder, "labels.csv")
    header, rows = _read_rows(csv_path, "\t" if info.get("csv_with_tab") else ",")
    cols = {
        "image": info.get("image_column_name", "FILE_NAME"),
        "category": info.get("category_column_name", "CATEGORY"),
    }
    if info.get("has_super_categories", False):
        cols["super_category"] = info.get("super_category_column_name", "SUPER_CATEGORY")
    missing = {k: c for k, c in cols.items() if c not in header}
    if missing:
        raise ValueError(
            f"{csv_path} has the columns {header}, but info.json names "
            + ", ".join(
                f"{k.replace('super_category', 'super category')} column {c!r}" for k, c in missing.items()
            )
            + "; rename the CSV's columns or set image_column_name / category_column_name / "
            "super_category_column_name in info.json to the CSV's names"
        )
    at = {k: header.index(c) for k, c in cols.items()}
    files: list[str] = []
    first_line: dict[str, int] = {}
    values: dict[str, list[str]] = {k: [] for k in at if k != "image"}
    for i, row in enumerate(rows):
        line = i + 2
        if len(row) < len(header):
            raise ValueError(
                f"{csv_path} line {line} has {len(row)} fields, the header {len(header)}; fix the row"
            )
        name = _safe_name(row[at["image"]], csv_path, line)
        if name in first_line:
            raise ValueError(
                f"{csv_path} lines {first_line[name]} and {line} both list the file {name!r}; "
                "each image must be listed once (remove the duplicate row)"
            )
        first_line[name] = line
        files.append(name)
        for task in values:
            v = row[at[task]]
            if not v or v.lower() in ("nan", "none", "null"):
                raise ValueError(
                    f"{csv_path} line {line}: the {cols[task]} column is empty for {name!r}; "
                    f"give every image its {task.replace('_', ' ')}"
                )
            values[task].append(v)
    classes = {task: sorted(set(v)) for task, v in values.items()}
    declared = info.get("categories")
    if isinstance(declared, list):
        unknown = sorted(set(classes["category"]) - {str(c) for c in declared})
        if unknown:
            line = first_line[files[values["category"].index(unknown[0])]]
            raise ValueError(
                f"{csv_path} line {line}: category {unknown[0]!r} is not one of the {len(declared)} "
                f"categories info.json lists ({len(unknown)} unknown: {unknown[:5]}); fix the row or the list"
            )
    total = info.get("total_categories")
    if isinstance(total, int) and not isinstance(total, bool) and total != len(classes["category"]):
        counts = {c: values["category"].count(c) for c in classes["category"]}
        rare = sorted(counts, key=lambda c: (counts[c], c))[:3]
        where = ", ".join(
            f"{c!r} (first at line {first_line[files[values['category'].index(c)]]})" for c in rare
        )
        raise ValueError(
            f"{csv_path} has {len(classes['category'])} categories but info.json declares total_categories = "
            f"{total}; the rarest are {where}: fix the rows with unknown categories or total_categories"
        )
    for task, names in classes.items():
        if len(names) < 2:
            raise ValueError(
                f"{csv_path}: column {cols[task]!r} has {len(names)} class ({names}); a task needs two"
            )
    sub = info.get("images_in_sub_folder")
    image_dir = (
        os.path.join(folder, "images")
        if sub or (sub is None and os.path.isdir(os.path.join(folder, "images")))
        else folder
    )
    present = set(os.listdir(image_dir)) if os.path.isdir(image_dir) else set()
    absent = [
        f for f in files if not (f in present if "/" not in f else os.path.isfile(os.path.join(image_dir, f)))
    ]
    if absent:
        raise ValueError(
            f"{csv_path} line {first_line[absent[0]]} lists the image {absent[0]!r}, which is not in "
            f"{image_dir} ({len(absent)} of {len(files)} listed images are missing); add the files or "
            "remove their rows"
        )
    labels = {
        t: np.searchsorted(np.asarray(classes[t]), np.asarray(values[t])).astype(np.int64) for t in classes
    }
    name = os.path.basename(folder)
    return _Folder(folder, name, _catalogue_id(name, info), info, image_dir, files, classes, labels)


def _kind(num_classes: int) -> TaskTarget:
    return TaskTarget.BINARY_CLASSIFICATION if num_classes == 2 else TaskTarget.MULTICLASS_CLASSIFICATION


class MetaAlbum(ImageFilesTaskSource):
    """One task of a Meta-Album dataset folder, as a task source.

    Args:
        root: the dataset folder (with ``labels.csv`` and ``info.json``).
        task: ``"category"`` or, where the dataset has super-categories, ``"super_category"``.
        split: ``"train"``, ``"val"``, ``"test"`` (ours, see the module docstring) or ``None`` (all images).
        channels: 1 (grey) or 3 (RGB).
        image_size: resize every image to this (Meta-Album's images are 128x128).
        output: ``"float"`` (``[0, 1]``, then ``(x - mean) / std``) or ``"uint8"``.
        mean: per-channel mean (or one float).
        std: per-channel std (or one float).

    Attributes:
        info: the parsed ``info.json``.
        dataset_id: the folder's name (the task identifier's first part).
        domain: the dataset's Meta-Album domain.

    Raises:
        ValueError: a malformed folder (naming the file, line or column and the fix), an unknown task or
            split.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        task: str = "category",
        split: str | None = None,
        *,
        channels: Literal[1, 3] = 3,
        image_size: int | tuple[int, int] | None = None,
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
    ) -> None:
        ds = _read_folder(os.fspath(root))
        if task not in ds.classes:
            raise ValueError(f"dataset {ds.id!r} has no task {task!r}; its tasks are {sorted(ds.classes)}")
        rows = np.arange(len(ds.files))
        if split is not None:
            splits = hash_splits(ds.files, salt=ds.catalogue_id)
            if split not in splits:
                raise ValueError(f"unknown split {split!r}; use 'train', 'val', 'test' or None")
            rows = splits[split]
        names = ds.classes[task]
        desc = TaskDescription(_kind(len(names)), dict(enumerate(names)), f"{ds.id}/{task}", ds.domain)
        super().__init__(
            [os.path.join(ds.image_dir, ds.files[i]) for i in rows],
            ds.labels[task][rows],
            desc,
            channels=channels,
            image_size=image_size,
            output=output,
            mean=mean,
            std=std,
        )
        self.info = ds.info
        self.dataset_id = ds.id
        self.domain = ds.domain


def _find_folders(root: str, max_depth: int = 4) -> list[str]:
    if os.path.isfile(os.path.join(root, "labels.csv")) or os.path.isfile(os.path.join(root, "info.json")):
        return [root]
    found = []
    for name in sorted(os.listdir(root)):
        sub = os.path.join(root, name)
        if os.path.isdir(sub) and not name.startswith(".") and max_depth > 0:
            found += _find_folders(sub, max_depth - 1)
    return found


def _first_image_size(ds: _Folder) -> tuple[int, int, int] | None:
    from PIL import Image

    try:
        with Image.open(os.path.join(ds.image_dir, ds.files[0])) as im:
            return (3, im.size[1], im.size[0])
    except (OSError, SyntaxError):
        return None


def scan_meta_album(
    root: str | os.PathLike[str],
) -> tuple[list[DatasetEntry], dict[str, str]]:
    """The Meta-Album dataset folders under ``root`` (up to 4 levels down; ``root`` may be one).

    Each [`DatasetEntry`][DatasetEntry] is identified by its folder's name, has the domain of Meta-Album's
    catalogue, declares the other found datasets of its domain as domain overlaps and the other versions of
    the same dataset as subject overlaps. ``info["input_size"]`` is the size of the first image (Meta-Album's
    images all have one size).

    Returns:
        ``(entries, problems)``: ``problems`` maps each folder that could not be read to the reason.

    Raises:
        ValueError: ``root`` is not a folder.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"Meta-Album root {root!r} is not a folder")
    read: list[_Folder] = []
    problems: dict[str, str] = {}
    for folder in _find_folders(root):
        try:
            ds = _read_folder(folder)
        except ValueError as exc:
            problems[folder] = str(exc)
            continue
        if any(d.id == ds.id for d in read):
            problems[folder] = f"a second dataset folder named {ds.id!r}; rename one (ids are folder names)"
            continue
        read.append(ds)
    entries = []
    for ds in read:
        tasks = tuple(
            TaskEntry(ds.id, task, _kind(len(names)), dict(enumerate(names)))
            for task, names in ds.classes.items()
        )
        known = META_ALBUM_DATASETS.get(ds.catalogue_id)
        name = known.name if known else str(ds.info.get("dataset_name") or ds.id)
        info: dict[str, Any] = {
            "format": "meta-album",
            "path": ds.path,
            "meta_album_id": ds.catalogue_id,
            "splits": ("train", "val", "test"),
            "input_size": _first_image_size(ds),
            "num_images": len(ds.files),
        }
        if known and known.upstream:
            info["upstream"] = known.upstream
        entries.append(
            DatasetEntry(
                ds.id,
                name,
                ds.domain,
                tasks,
                domain_overlaps=frozenset(d.id for d in read if d.domain == ds.domain and d.id != ds.id),
                subject_overlaps=frozenset(
                    d.id for d in read if d.catalogue_id == ds.catalogue_id and d.id != ds.id
                ),
                info=info,
            )
        )
    return entries, problems


def _resolve(root: str, dataset_id: str) -> str:
    root = os.path.abspath(root)
    if os.path.basename(root) == dataset_id and os.path.isfile(os.path.join(root, "labels.csv")):
        return root
    for folder in _find_folders(root) if os.path.isdir(root) else []:
        if os.path.basename(folder) == dataset_id:
            return folder
    raise ValueError(f"no Meta-Album dataset folder named {dataset_id!r} under {root!r}")


def open_meta_album(
    root: str | os.PathLike[str],
    dataset_id: str,
    task_name: str,
    split: str | None,
    *,
    channels: int = 3,
    mean: Stats = None,
    std: Stats = None,
    image_size: int | None = None,
) -> MetaAlbum:
    """Task ``task_name`` of the dataset folder ``dataset_id`` under ``root`` (the formats contract).

    Raises:
        ValueError: no such folder, task or split.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return MetaAlbum(
        _resolve(os.fspath(root), dataset_id),
        task_name,
        split,
        channels=1 if channels == 1 else 3,
        image_size=image_size,
        mean=mean,
        std=std,
    )


def write_synthetic_meta_album(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    datasets: Sequence[str] = ("BRD_Micro", "DOG_Micro", "FLW_Micro"),
    num_classes: int = 4,
    images_per_class: int = 8,
    image_size: int = 32,
) -> str:
    """Write small random Meta-Album folders under ``root`` in the real layout; return ``root``.

    Each dataset gets ``info.json`` (the repository's keys), ``labels.csv`` (``FILE_NAME``, ``CATEGORY``,
    ``SUPER_CATEGORY``: two super-categories) and ``images/`` of random PNG images (lossless, so reads can
    be compared with what was written). The default ids give two datasets of one domain and one of another.

    Examples:
        >>> import os, tempfile
        >>> root = write_synthetic_meta_album(tempfile.mkdtemp(), datasets=["PLK_Micro"])
        >>> sorted(os.listdir(os.path.join(root, "PLK_Micro")))
        ['images', 'info.json', 'labels.csv']
    """
    from PIL import Image

    if num_classes < 2 or images_per_class < 1:
        raise ValueError(
            f"need num_classes >= 2 and images_per_class >= 1, got {num_classes=}, {images_per_class=}"
        )
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    for name in datasets:
        folder = os.path.join(root, name)
        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
        rows = []
        for c in range(num_classes):
            for k in range(images_per_class):
                file = f"{name.lower()}_{c}_{k}.png"
                image = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
                Image.fromarray(image).save(os.path.join(folder, "images", file))
                rows.append((file, f"class {c}", f"group {c % 2}"))
        with open(os.path.join(folder, "labels.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["FILE_NAME", "CATEGORY", "SUPER_CATEGORY"])
            writer.writerows(rows)
        info = {
            "dataset_name": name,
            "dataset_description": "synthetic Meta-Album-format dataset (random images)",
            "total_categories": num_classes,
            "total_super_categories": 2,
            "uniform_number_of_images_per_category": True,
            "images_per_category": images_per_class,
            "has_super_categories": True,
            "image_column_name": "FILE_NAME",
            "category_column_name": "CATEGORY",
            "super_category_column_name": "SUPER_CATEGORY",
            "images_in_sub_folder": True,
            "csv_with_tab": False,
        }
        with open(os.path.join(folder, "info.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=4)
    return root
