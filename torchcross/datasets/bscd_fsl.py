"""BSCD-FSL (Guo et al. 2020): the four target datasets in their downloaded layouts, as task sources.

The Broader Study of Cross-Domain Few-Shot Learning ([IBM/cdfsl-benchmark](https://github.com/IBM/cdfsl-benchmark))
evaluates on four datasets, each read here from the folder its download unpacks to:

- ``cropdisease``: CropDisease (PlantVillage), ``dataset/train/<class>/<image>``; task ``disease``.
- ``eurosat``: EuroSAT (RGB), ``2750/<class>/<image>.jpg`` (or the ten class folders in another folder,
  as ``EuroSAT_RGB.zip`` unpacks); task ``land cover``.
- ``isic2018``: ISIC 2018 task 3 (HAM10000), ``ISIC2018_Task3_Training_GroundTruth.csv`` (in the folder or
  in ``ISIC2018_Task3_Training_GroundTruth/``) of one-hot columns MEL, NV, BCC, AKIEC, BKL, DF, VASC, and
  ``ISIC2018_Task3_Training_Input/<image>.jpg``; task ``diagnosis``.
- ``chestx``: ChestX-ray14, ``Data_Entry_2017.csv`` and ``images/`` or ``images_*/images/``; tasks
  ``finding`` (BSCD-FSL's 7 classes) and ``findings`` (14 labels, multi-label).

``chestx/finding`` is the benchmark's single-label subset, selected as ``datasets/Chest_few_shot.py`` of
IBM/cdfsl-benchmark (at 21449f2) selects it: an image whose "Finding Labels" name exactly one finding, which
is one of Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, Nodule, Pneumothorax (so "No Finding",
Pneumonia and every image with two or more findings are left out), with class keys in that order.
``chestx/findings`` (ours: no BSCD-FSL loader offers it) is every image with the 14 findings of the
dataset as labels; a "No Finding" image is an all-zero row.

Splits: ChestX-ray14's official ``train_val_list.txt`` and ``test_list.txt`` are used when both are present
(``val``: a hash of the patient id takes 15% of the patients of ``train_val_list.txt``); without them, and
for the other three datasets (which have no official splits), the splits are
[`hash_splits()`][hash_splits] of the patient id (ChestX-ray14) or of the
file name (ours). The BSCD-FSL protocol itself samples target episodes from the whole dataset
(``split=None``): see [`bscd_fsl_episodes()`][bscd_fsl_episodes].

Images are decoded by [`ImageFilesTaskSource`][ImageFilesTaskSource]; the
datasets' image sizes vary (ISIC, ChestX) or are not checked on reading, so ``image_size`` is needed to
stack images of different sizes.

Examples:
    >>> import tempfile
    >>> root = write_synthetic_bscd_fsl(tempfile.mkdtemp(), images_per_class=6)
    >>> entries, problems = scan_bscd_fsl(root)
    >>> [(e.id, [t.task_name for t in e.tasks]) for e in entries]  # doctest: +NORMALIZE_WHITESPACE
    [('chestx', ['finding', 'findings']), ('cropdisease', ['disease']), ('eurosat', ['land cover']),
     ('isic2018', ['diagnosis'])]
    >>> src = BSCDFSL(root, "chestx", "finding", image_size=8)
    >>> src.task_description.classes[6], src.get_batch([0, 1])[0].shape
    ('Pneumothorax', torch.Size([2, 3, 8, 8]))
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from torchcross.data.metadataset.episode_set import EpisodeSet, sample_episode_set
from torchcross.datasets._images import Stats
from torchcross.datasets.generic import read_image_folder
from torchcross.datasets.image_files import ImageFilesTaskSource, hash_splits
from torchcross.tasks.catalogue import DatasetEntry, TaskEntry
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "BSCD_FSL_DATASETS",
    "BSCD_FSL_PROTOCOL",
    "CHESTX_BSCD_CLASSES",
    "CHESTX_FINDINGS",
    "ISIC_CLASSES",
    "BSCDFSL",
    "bscd_fsl_episodes",
    "open_bscd_fsl",
    "scan_bscd_fsl",
    "write_synthetic_bscd_fsl",
]

CHESTX_BSCD_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumothorax",
)
"""The 7 classes of ``chestx/finding``, in BSCD-FSL's label order (``Chest_few_shot.py``, ``labels_maps``)."""

CHESTX_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
"""The 14 labels of ``chestx/findings``, in the order of the dataset's paper (and of MedIMeta's ``cxr``)."""

_NO_FINDING = "No Finding"

ISIC_CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
"""The one-hot columns of ``ISIC2018_Task3_Training_GroundTruth.csv``: the classes of
``isic2018/diagnosis``."""

_ISIC_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"
_ISIC_IMAGES = "ISIC2018_Task3_Training_Input"
_CHESTX_CSV = "Data_Entry_2017.csv"


@dataclass(frozen=True)
class _Dataset:
    name: str
    domain: str
    upstream: tuple[str, ...]
    tasks: tuple[str, ...]


BSCD_FSL_DATASETS: dict[str, _Dataset] = {
    "chestx": _Dataset("ChestX-ray14", "Chest X-ray", ("chestx-ray14",), ("finding", "findings")),
    "cropdisease": _Dataset("CropDisease", "Plant photography", ("plantvillage",), ("disease",)),
    "eurosat": _Dataset("EuroSAT", "Satellite imagery", ("eurosat",), ("land cover",)),
    "isic2018": _Dataset("ISIC 2018 task 3", "Dermatoscopy", ("ham10000", "isic2018-task3"), ("diagnosis",)),
}
"""The four datasets by id: name, domain, ``info["upstream"]`` (ChestX-ray14 is MedIMeta's ``cxr``
source, ISIC 2018 task 3 is HAM10000, MedIMeta's ``derm`` source) and task names (the first is primary)."""

BSCD_FSL_PROTOCOL: dict[str, Any] = {
    "n_way": 5,
    "shots": (5, 20, 50),
    "n_query": 15,
    "n_episodes": 600,
    "metric": "accuracy",
}
"""The benchmark's evaluation: 5-way, 5/20/50 shots, 15 query images per class, 600 episodes per shot count,
mean accuracy with a 95% interval (the README of IBM/cdfsl-benchmark). ``[evaluation] preset = "bscd-fsl"``
sets these keys in ``torchcross run``."""


# ------------------------------------------------------------------------------------------------ layout


def _marker(folder: str) -> tuple[str, str] | None:
    """``(dataset id, dataset folder)`` if ``folder`` is one of the four datasets' download folders."""
    if os.path.isfile(os.path.join(folder, _CHESTX_CSV)):
        return "chestx", folder
    if os.path.isdir(os.path.join(folder, _ISIC_IMAGES)):
        return "isic2018", folder
    if os.path.isdir(os.path.join(folder, "dataset", "train")):
        return "cropdisease", folder
    if os.path.basename(os.path.normpath(folder)) == "2750":
        return "eurosat", folder
    if os.path.isdir(os.path.join(folder, "2750")):
        return "eurosat", os.path.join(folder, "2750")
    if set(_EUROSAT_CLASSES) <= {os.path.basename(d) for d in _subdirs(folder)}:
        return "eurosat", folder  # the later EuroSAT_RGB.zip: the class folders without 2750/
    return None


def _subdirs(folder: str) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.path for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _find(root: str) -> tuple[dict[str, str], dict[str, str]]:
    """``({dataset id: folder}, problems)``: the datasets at ``root``, in its folders or theirs."""
    found: dict[str, str] = {}
    problems: dict[str, str] = {}
    level = [root]
    for _ in range(3):
        below = []
        for folder in level:
            hit = _marker(folder)
            if hit is None:
                below += _subdirs(folder)
            elif hit[0] in found:
                problems[hit[1]] = (
                    f"a second {BSCD_FSL_DATASETS[hit[0]].name} folder (the first is {found[hit[0]]!r}); "
                    "keep one per root"
                )
            else:
                found[hit[0]] = hit[1]
        level = below
    return dict(sorted(found.items())), problems


def _locate(root: str | os.PathLike[str], dataset: str) -> str:
    if dataset not in BSCD_FSL_DATASETS:
        raise ValueError(f"unknown BSCD-FSL dataset {dataset!r}; known: {', '.join(BSCD_FSL_DATASETS)}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"BSCD-FSL root {root!r} is not a directory")
    found, _ = _find(root)
    if dataset not in found:
        raise FileNotFoundError(
            f"no {BSCD_FSL_DATASETS[dataset].name} folder under {root!r} (looked for {_LAYOUT[dataset]} at "
            "the root and two folder levels below it)"
        )
    return found[dataset]


_LAYOUT = {
    "chestx": f"a folder with {_CHESTX_CSV}",
    "cropdisease": "a folder with dataset/train/<class>/",
    "eurosat": "a folder 2750/<class>/",
    "isic2018": f"a folder with {_ISIC_IMAGES}/",
}


def _file_name(folder: str, name: str, where: str) -> str:
    """``folder/name`` for a plain file name; a name with a folder part (``..``, ``/``) is refused."""
    if (
        not name
        or name in (".", "..")
        or os.path.basename(name) != name
        or "\\" in name
        or os.path.isabs(name)
    ):
        raise ValueError(
            f"{where}: image {name!r} is not a plain file name: it names a path outside the image folder "
            f"{folder!r} or below it; list the image's file name alone"
        )
    return os.path.join(folder, name)


# ------------------------------------------------------------------------------------------------ listings


@dataclass(frozen=True)
class _Task:
    target: TaskTarget
    classes: dict[int, str]
    paths: list[str]
    labels: np.ndarray
    keys: list[str]  # what the split hash reads (file name or patient id)
    official: np.ndarray | None = None  # ChestX-ray14: "train_val" / "test" / "" per row


def _read_csv(path: str, required: Sequence[str], fix: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells of the required columns)`` per row of a CSV file whose header holds ``required``
    (an error names the file and the columns found)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: the header has columns {header}, not {missing}; {fix}")
        columns = [header.index(c) for c in required]
        width = max(columns) + 1
        for row in reader:
            if len(row) < width:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                raise ValueError(
                    f"{path}, line {reader.line_num}: {len(row)} cells, but the header names {len(header)} "
                    "columns; give every row a cell per column"
                )
            yield reader.line_num, [row[i].strip() for i in columns]


def _class_folders(folder: str, where: str) -> dict[str, _Task]:
    paths, labels, classes = read_image_folder(folder)
    keys = [os.path.relpath(p, folder) for p in paths]
    return {where: _Task(TaskTarget.MULTICLASS_CLASSIFICATION, classes, paths, labels, keys)}


def _read_isic(folder: str) -> dict[str, _Task]:
    csv_path = os.path.join(folder, _ISIC_CSV)
    if not os.path.isfile(csv_path):
        csv_path = os.path.join(folder, _ISIC_CSV[: -len(".csv")], _ISIC_CSV)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(
            f"ISIC 2018 folder {folder!r} has no {_ISIC_CSV} (looked in it and in "
            f"{_ISIC_CSV[: -len('.csv')]}/); unzip the task 3 training ground truth there"
        )
    images = os.path.join(folder, _ISIC_IMAGES)
    present = set(os.listdir(images))
    columns = ("image", *ISIC_CLASSES)
    fix = f"the task 3 ground truth has the columns {', '.join(columns)}"
    paths: list[str] = []
    labels: list[int] = []
    keys: list[str] = []
    seen: dict[str, int] = {}
    for line, row in _read_csv(csv_path, columns, fix):
        where = f"{csv_path}, line {line}"
        image, cells = row[0], row[1:]
        if image in seen:
            raise ValueError(
                f"{where}: image {image!r} is listed again (first on line {seen[image]}); list it once"
            )
        seen[image] = line
        try:
            values = [float(c) for c in cells]
        except ValueError:
            raise ValueError(
                f"{where}: the class columns {cells} are not numbers; each row is "
                "one-hot (a 1 in one of MEL..VASC, 0 elsewhere)"
            ) from None
        if sorted(values) != [0.0] * (len(values) - 1) + [1.0]:
            raise ValueError(
                f"{where}: image {image!r} has {dict(zip(ISIC_CLASSES, values))}, not one-hot; each row "
                "needs a 1 in exactly one of MEL..VASC and 0 in the others"
            )
        path = _file_name(images, image + ".jpg", where)
        if image + ".jpg" not in present:
            raise ValueError(f"{where}: image {path!r} is listed but missing; restore it or remove the row")
        paths.append(path)
        labels.append(values.index(1.0))
        keys.append(image)
    classes = dict(enumerate(ISIC_CLASSES))
    return {
        "diagnosis": _Task(TaskTarget.MULTICLASS_CLASSIFICATION, classes, paths, np.asarray(labels), keys)
    }


def _chestx_images(folder: str) -> dict[str, str]:
    """``{file name: path}`` of the images in ``images/`` and ``images_*/images/`` (or ``images_*/``)."""
    dirs = [os.path.join(folder, "images")]
    for sub in _subdirs(folder):
        if os.path.basename(sub).startswith("images_"):
            inner = os.path.join(sub, "images")
            dirs.append(inner if os.path.isdir(inner) else sub)
    index: dict[str, str] = {}
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name in index:
                raise ValueError(
                    f"ChestX-ray14 image {name!r} is in two folders: {index[name]!r} and "
                    f"{os.path.join(d, name)!r}; keep one"
                )
            index[name] = os.path.join(d, name)
    return index


def _read_list(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def _chestx_row_error(
    where: str, folder: str, image: str, findings: list[str], seen: dict[str, int], index: dict[str, str]
) -> None:
    """Raise the error of a bad row of ``Data_Entry_2017.csv``."""
    if image in seen:
        raise ValueError(
            f"{where}: image {image!r} is listed again (first on line {seen[image]}); list it once"
        )
    _file_name(folder, image, where)
    if image not in index:
        raise ValueError(
            f"{where}: image {image!r} is listed but not in {folder!r}/images/ nor images_*/images/; "
            "restore it or remove the row"
        )
    unknown = [f for f in findings if f not in CHESTX_FINDINGS and f != _NO_FINDING]
    if unknown:
        raise ValueError(
            f"{where}: unknown findings {unknown} for image {image!r}; 'Finding Labels' lists findings "
            f"of {', '.join(CHESTX_FINDINGS)} separated by '|', or '{_NO_FINDING}' alone"
        )
    raise ValueError(
        f"{where}: image {image!r} has '{_NO_FINDING}' together with other findings {findings}; "
        f"'{_NO_FINDING}' stands alone"
    )


def _read_chestx(folder: str) -> dict[str, _Task]:
    csv_path = os.path.join(folder, _CHESTX_CSV)
    index = _chestx_images(folder)
    known = {n: i for i, n in enumerate(CHESTX_FINDINGS)}
    bscd = {n: i for i, n in enumerate(CHESTX_BSCD_CLASSES)}
    columns = ("Image Index", "Finding Labels", "Patient ID")
    fix = "Data_Entry_2017.csv of ChestX-ray14 has them (a header line, then one line per image)"
    lists = [os.path.join(folder, f) for f in ("train_val_list.txt", "test_list.txt")]
    official = [_read_list(p) for p in lists] if all(os.path.isfile(p) for p in lists) else None
    paths: list[str] = []
    positives: list[tuple[int, int]] = []  # (row, finding) of every finding named
    patients: list[str] = []
    single: list[int] = []
    seen: dict[str, int] = {}
    for line, (image, labels_cell, patient) in _read_csv(csv_path, columns, fix):
        row_index = len(paths)
        findings = labels_cell.split("|")
        if (
            image in seen
            or image not in index
            or (len(findings) > 1 and _NO_FINDING in findings)
            or any(f not in known for f in findings if f != _NO_FINDING)
        ):
            _chestx_row_error(f"{csv_path}, line {line}", folder, image, findings, seen, index)
        seen[image] = line
        positives += [(row_index, known[f]) for f in findings if f != _NO_FINDING]
        paths.append(index[image])
        patients.append(patient)
        # BSCD-FSL's rule (Chest_few_shot.py): one finding, and it is one of the 7 classes
        single.append(bscd[findings[0]] if len(findings) == 1 and findings[0] in bscd else -1)
    labels = np.zeros((len(paths), len(CHESTX_FINDINGS)), dtype=np.int64)
    if positives:
        rows_, cols_ = np.asarray(positives).T
        labels[rows_, cols_] = 1
    names = [os.path.basename(p) for p in paths]
    split_of = None
    if official is not None:
        split_of = np.array(
            ["train_val" if n in official[0] else "test" if n in official[1] else "" for n in names]
        )
    keep = np.flatnonzero(np.asarray(single) >= 0)
    return {
        "finding": _Task(
            TaskTarget.MULTICLASS_CLASSIFICATION,
            dict(enumerate(CHESTX_BSCD_CLASSES)),
            [paths[i] for i in keep],
            np.asarray(single, dtype=np.int64)[keep],
            [patients[i] for i in keep],
            None if split_of is None else split_of[keep],
        ),
        "findings": _Task(
            TaskTarget.MULTILABEL_CLASSIFICATION,
            dict(enumerate(CHESTX_FINDINGS)),
            paths,
            labels,
            patients,
            split_of,
        ),
    }


def _read(dataset: str, folder: str) -> dict[str, _Task]:
    if dataset == "chestx":
        return _read_chestx(folder)
    if dataset == "isic2018":
        return _read_isic(folder)
    if dataset == "cropdisease":
        return _class_folders(os.path.join(folder, "dataset", "train"), "disease")
    return _class_folders(folder, "land cover")


def _split_indices(task: _Task, dataset: str, split: str | None) -> np.ndarray:
    """The rows of ``split`` (``None``: all rows)."""
    if split is None:
        return np.arange(len(task.paths))
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val', 'test' or None (the whole dataset), got {split!r}")
    if task.official is None:
        return hash_splits(task.keys, salt=dataset)[split]
    if split == "test":
        return np.flatnonzero(task.official == "test")
    rows = np.flatnonzero(task.official == "train_val")
    parts = hash_splits([task.keys[i] for i in rows], (0.85, 0.15, 0.0), salt=dataset)
    return rows[parts["train" if split == "train" else "val"]]


# ------------------------------------------------------------------------------------------------ public API


class BSCDFSL(ImageFilesTaskSource):
    """One task of a BSCD-FSL dataset, read from its downloaded folder.

    Args:
        root: the dataset's folder, or a folder above it (the datasets are found as
            [`scan_bscd_fsl()`][scan_bscd_fsl] finds them).
        dataset: ``"chestx"``, ``"cropdisease"``, ``"eurosat"`` or ``"isic2018"``.
        task: a task name of the dataset (`BSCD_FSL_DATASETS`); ``None``: its first (for ChestX-ray14
            ``"finding"``, the benchmark's 7 classes).
        split: ``"train"``, ``"val"``, ``"test"`` (see the module docstring) or ``None``, the whole
            dataset (what the benchmark samples its episodes from).
        channels: 1 (grey) or 3 (RGB, what the benchmark feeds its networks).
        image_size: resize every image to ``image_size`` x ``image_size`` (needed to batch images of
            different sizes).
        output: ``"float"`` (``[0, 1]``, then ``mean``/``std``) or ``"uint8"``.
        mean: per-channel mean (or one float).
        std: per-channel std (or one float).

    Raises:
        ValueError: an unknown dataset, task or split, or a bad file: a ground-truth row that is not
            one-hot, an image listed but missing, an image listed twice, an unknown finding, a CSV without
            the expected columns, an image path outside the dataset folder (each naming the file and line).
        FileNotFoundError: no folder of ``dataset`` under ``root``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        dataset: str,
        task: str | None = None,
        split: str | None = None,
        *,
        channels: Literal[1, 3] = 3,
        image_size: int | tuple[int, int] | None = None,
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
    ) -> None:
        folder = _locate(root, dataset)
        tasks = _read(dataset, folder)
        task = BSCD_FSL_DATASETS[dataset].tasks[0] if task is None else task
        if task not in tasks:
            raise ValueError(f"{dataset} has no task {task!r}; its tasks: {', '.join(tasks)}")
        t = tasks[task]
        rows = _split_indices(t, dataset, split)
        description = TaskDescription(
            t.target, t.classes, f"{dataset}/{task}", BSCD_FSL_DATASETS[dataset].domain
        )
        super().__init__(
            [t.paths[i] for i in rows],
            t.labels[rows],
            description,
            channels=channels,
            image_size=image_size,
            output=output,
            mean=mean,
            std=std,
        )
        self.dataset, self.task, self.split, self.folder = dataset, task, split, folder


def scan_bscd_fsl(root: str | os.PathLike[str]) -> tuple[list[DatasetEntry], dict[str, str]]:
    """The BSCD-FSL datasets under ``root`` (at it, or up to two folder levels below) as catalogue entries.

    Each entry has its tasks, its domain, ``info["upstream"]`` (`BSCD_FSL_DATASETS`), ``info["splits"]``
    (``("train", "val", "test")``), ``info["input_size"]`` (``None``: sizes are not checked on scanning),
    ``info["folder"]`` and ``info["num_samples"]`` (per task). A folder that cannot be read is a problem
    ``{folder: message}``, not an error.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"BSCD-FSL root {root!r} is not a directory")
    found, problems = _find(root)
    entries = []
    for dataset, folder in found.items():
        meta = BSCD_FSL_DATASETS[dataset]
        try:
            tasks = _read(dataset, folder)
        except (OSError, ValueError) as exc:
            problems[folder] = str(exc)
            continue
        entries.append(
            DatasetEntry(
                dataset,
                meta.name,
                meta.domain,
                tuple(TaskEntry(dataset, name, t.target, t.classes) for name, t in tasks.items()),
                info={
                    "input_size": None,
                    "splits": ("train", "val", "test"),
                    "upstream": meta.upstream,
                    "folder": folder,
                    "num_samples": {name: len(t.paths) for name, t in tasks.items()},
                    "format": "bscd-fsl",
                },
            )
        )
    return entries, problems


def open_bscd_fsl(
    root: str | os.PathLike[str],
    dataset_id: str,
    task_name: str,
    split: str | None,
    *,
    channels: int = 3,
    mean: Any = None,
    std: Any = None,
    image_size: int | None = None,
) -> BSCDFSL:
    """One task as a task source (the contract of `torchcross.datasets.formats`): a [`BSCDFSL`][BSCDFSL]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return BSCDFSL(
        root,
        dataset_id,
        task_name,
        split,
        channels=1 if channels == 1 else 3,
        image_size=image_size,
        mean=mean,
        std=std,
    )


def bscd_fsl_episodes(
    source: Any,
    n_shot: int,
    *,
    seed: int = 0,
    n_way: int = 5,
    n_query: int = 15,
    n_episodes: int = 600,
) -> EpisodeSet:
    """The fixed BSCD-FSL episodes of ``source`` at ``n_shot`` shots: a function of ``seed`` and ``n_shot``.

    ``n_episodes`` episodes of ``n_way`` classes drawn anew per episode, ``n_shot`` support and ``n_query``
    query images per class (`BSCD_FSL_PROTOCOL`), drawn by
    [`sample_episode_set()`][torchcross.data.metadataset.sample_episode_set] with ``seed``; the benchmark
    reports mean accuracy over them with a 95% interval
    ([`evaluate()`][torchcross.evaluation.episodic.evaluate]'s ``accuracy`` and its interval). Save the set
    (``EpisodeSet.save``) to evaluate every method on the same episodes, which the original scripts did not
    fix (IBM/cdfsl-benchmark issue 21).

    Examples:
        >>> import tempfile
        >>> root = write_synthetic_bscd_fsl(tempfile.mkdtemp(), images_per_class=6)
        >>> src = BSCDFSL(root, "eurosat", image_size=8)
        >>> episodes = bscd_fsl_episodes(src, 1, n_query=2, n_episodes=3)
        >>> len(episodes), len(episodes.episodes[0].classes), len(episodes.episodes[0].query)
        (3, 5, 10)
    """
    return sample_episode_set(source, n_episodes, n_shot, n_query, seed=seed, n_way=n_way)


# ------------------------------------------------------------------------------------------------ synthetic

_CROP_CLASSES = (
    "Apple___Apple_scab",
    "Apple___healthy",
    "Corn_(maize)___Common_rust_",
    "Grape___Black_rot",
    "Potato___Early_blight",
    "Tomato___Leaf_Mold",
)
_EUROSAT_CLASSES = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)


def write_synthetic_bscd_fsl(
    root: str | os.PathLike[str], *, seed: int = 0, images_per_class: int = 20, image_size: int = 16
) -> str:
    """Write the four BSCD-FSL datasets, tiny, in their downloaded layouts under ``root``; return ``root``.

    ``root/CropDiseases/dataset/train/<class>/*.jpg`` (6 classes), ``root/EuroSAT/2750/<class>/*.jpg``
    (10 classes), ``root/ISIC/`` (ground-truth CSV in its folder, images ``*.jpg`` in
    ``ISIC2018_Task3_Training_Input/``, 7 classes) and ``root/chestX/`` (``Data_Entry_2017.csv``,
    ``images_001/images/*.png``, ``train_val_list.txt``, ``test_list.txt``): ``images_per_class`` images per
    class (ChestX-ray14: per class of the 7-class subset, plus as many "No Finding", Pneumonia and
    multi-finding images). Images are random ``image_size`` x ``image_size`` pixels, a pure function of
    ``seed``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = os.fspath(root)

    def save(path: str, grey: bool = False) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shape = (image_size, image_size) if grey else (image_size, image_size, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, quality=95)

    for cls in _CROP_CLASSES:
        for i in range(images_per_class):
            save(os.path.join(root, "CropDiseases", "dataset", "train", cls, f"{cls[:5]}_{i:04d}.JPG"))
    for cls in _EUROSAT_CLASSES:
        for i in range(images_per_class):
            save(os.path.join(root, "EuroSAT", "2750", cls, f"{cls}_{i + 1}.jpg"))
    isic = os.path.join(root, "ISIC")
    rows = []
    for k in range(len(ISIC_CLASSES) * images_per_class):
        image = f"ISIC_{24306 + k:07d}"
        save(os.path.join(isic, _ISIC_IMAGES, image + ".jpg"))
        one_hot = ["1.0" if j == k % len(ISIC_CLASSES) else "0.0" for j in range(len(ISIC_CLASSES))]
        rows.append([image, *one_hot])
    os.makedirs(os.path.join(isic, _ISIC_CSV[: -len(".csv")]), exist_ok=True)
    with open(os.path.join(isic, _ISIC_CSV[: -len(".csv")], _ISIC_CSV), "w", newline="") as f:
        csv.writer(f).writerows([["image", *ISIC_CLASSES], *rows])
    chestx = os.path.join(root, "chestX")
    labels = [c for c in CHESTX_BSCD_CLASSES for _ in range(images_per_class)]
    others = [_NO_FINDING, "Pneumonia", "Effusion|Mass", "Hernia", "Cardiomegaly|Edema|Fibrosis"]
    labels += [others[i % len(others)] for i in range(images_per_class)]
    header = [
        "Image Index",
        "Finding Labels",
        "Follow-up #",
        "Patient ID",
        "Patient Age",
        "Patient Gender",
        "View Position",
        "OriginalImage[Width",
        "Height]",
        "OriginalImagePixelSpacing[x",
        "y]",
        "",
    ]
    entries, names = [], []
    for k in range(len(labels)):
        patient = k // 3 + 1
        name = f"{patient:08d}_{k % 3:03d}.png"
        save(os.path.join(chestx, "images_001", "images", name), grey=True)
        entries.append(
            [name, labels[k], str(k % 3), str(patient), "58", "M", "PA", "2682", "2749", "0.143", "0.143", ""]
        )
        names.append(name)
    with open(os.path.join(chestx, _CHESTX_CSV), "w", newline="") as f:
        csv.writer(f).writerows([header, *entries])
    test = {n for n in names if int(n[:8]) % 5 == 0}
    for fname, part in (
        ("train_val_list.txt", [n for n in names if n not in test]),
        ("test_list.txt", sorted(test)),
    ):
        with open(os.path.join(chestx, fname), "w") as f:
            f.write("".join(n + "\n" for n in part))
    return root
