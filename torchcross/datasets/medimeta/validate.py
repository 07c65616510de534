"""Check a MedIMeta dataset folder against its ``info.yaml`` and the catalogue.

[`validate_medimeta()`][torchcross.datasets.medimeta.validate_medimeta] reports every problem it finds, by
file, instead of stopping
at the first: counts, shapes, dtypes, label ranges, split files, and (for catalogue
ids) the metadata of the published dataset. ``python -m torchcross.datasets.medimeta.validate
DATA_PATH [ID ...]`` prints the reports.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from torchcross.datasets.medimeta._hdf5 import HDF5Images, MedIMetaFileError, file_kind, open_regular
from torchcross.datasets.medimeta.catalogue import medimeta_catalogue
from torchcross.datasets.medimeta.folder import SPLITS, DatasetInfo, read_info, read_split
from torchcross.datasets.medimeta.paths import read_text
from torchcross.tasks.labels import normalize_labels
from torchcross.tasks.task import TaskTarget

__all__ = ["Problem", "ValidationReport", "validate_all", "validate_medimeta"]


@dataclass(frozen=True)
class Problem:
    """One finding: the file it concerns, what is wrong, and whether it breaks reading."""

    file: str
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"[{self.level}] {self.file}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """The problems found in one dataset folder (empty when it is valid)."""

    dataset_dir: str
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(p.level == "error" for p in self.problems)

    def by_file(self) -> dict[str, list[str]]:
        """``{file: [messages]}``."""
        out: dict[str, list[str]] = {}
        for p in self.problems:
            out.setdefault(p.file, []).append(f"[{p.level}] {p.message}")
        return out

    def raise_if_errors(self) -> None:
        """Raise [`MedIMetaFileError`][torchcross.datasets.medimeta.MedIMetaFileError] listing every problem
        if there is an error."""
        if not self.ok:
            raise MedIMetaFileError(str(self))

    def __str__(self) -> str:
        if not self.problems:
            return f"{self.dataset_dir}: ok"
        lines = [f"{self.dataset_dir}: {len(self.problems)} problem(s)"]
        for file, messages in self.by_file().items():
            lines.append(f"  {os.path.relpath(file, self.dataset_dir) if file != self.dataset_dir else '.'}")
            lines += [f"    {m}" for m in messages]
        return "\n".join(lines)


class _Checker:
    def __init__(self, dataset_dir: str) -> None:
        self.dir = dataset_dir
        self.problems: list[Problem] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def add(self, file: str, message: str, level: Literal["error", "warning"] = "error") -> None:
        self.problems.append(Problem(file, message, level))

    def catalogue(self, info: DatasetInfo) -> None:
        cat = medimeta_catalogue()
        if info.id not in cat:
            return
        entry, f = cat.dataset(info.id), self.path("info.yaml")
        for key, want, got in [
            ("name", entry.name, info.name),
            ("domain", entry.domain, info.domain),
            ("input_size", tuple(entry.info["input_size"]), info.input_size),
            ("total_num_samples", entry.info["total_num_samples"], info.total_num_samples),
            ("splits_num_samples", entry.info["splits_num_samples"], dict(info.splits_num_samples)),
            (
                "original_splits_num_samples",
                entry.info["original_splits_num_samples"],
                dict(info.original_splits_num_samples),
            ),
        ]:
            if want != got:
                self.add(f, f"{key} is {got!r}, the MedIMeta catalogue says {want!r}")
        want_tasks = {t.task_name: t for t in entry.tasks}
        for t in info.tasks:
            ref = want_tasks.pop(t.name, None)
            if ref is None:
                self.add(f, f"task {t.name!r} is not in the catalogue entry of {info.id!r}", "warning")
            elif ref.task_target is not t.task_target or dict(ref.classes) != dict(t.labels):
                self.add(
                    f,
                    f"task {t.name!r} differs from the catalogue "
                    f"({ref.task_target.name}, {dict(ref.classes)})",
                )
        for name in want_tasks:
            self.add(f, f"task {name!r} of the catalogue is missing")

    def images(self, info: DatasetInfo) -> int | None:
        f = self.path("images.hdf5")
        c, h, w = info.input_size
        n = None
        if file_kind(f) == "missing":
            self.add(f, "missing")
        else:
            try:
                store = HDF5Images(f)
            except MedIMetaFileError as exc:
                self.add(f, str(exc).removeprefix(f"{f}: "))
            else:
                n = store.shape[0]
                want = (h, w) if c == 1 else (h, w, c)
                if store.shape[1:] != want:
                    self.add(
                        f,
                        f"images have shape {store.shape[1:]}, info.yaml input_size {list(info.input_size)} "
                        f"means {want}",
                    )
                if not store.contiguous:
                    self.add(
                        f,
                        "'images' is chunked or compressed: readable, but episodes load much slower",
                        "warning",
                    )
        if info.total_num_samples is not None and n is not None and n != info.total_num_samples:
            self.add(f, f"has {n} images, info.yaml total_num_samples is {info.total_num_samples}")
        tiffs = self.path("images")
        if os.path.isdir(tiffs):
            names = sorted(os.listdir(tiffs))
            expected = n if n is not None else info.total_num_samples
            if expected is not None and names != [f"{i:06d}.tiff" for i in range(expected)]:
                self.add(tiffs, f"has {len(names)} files, expected 000000.tiff..{expected - 1:06d}.tiff")
        return n if n is not None else info.total_num_samples

    def labels(self, info: DatasetInfo, n: int | None) -> None:
        folder = self.path("task_labels")
        declared = {f"{t.name}.npy" for t in info.tasks}
        if os.path.isdir(folder):
            for extra in sorted(set(os.listdir(folder)) - declared):
                self.add(os.path.join(folder, extra), "not a task declared in info.yaml", "warning")
        for t in info.tasks:
            f = os.path.join(folder, f"{t.name}.npy")
            if file_kind(f) == "missing":
                self.add(f, f"missing (labels of task {t.name!r})")
                continue
            try:
                with open_regular(f) as fh:
                    arr = np.load(fh, allow_pickle=False)
            except MedIMetaFileError as exc:
                self.add(f, str(exc).removeprefix(f"{f}: "))
                continue
            except (OSError, ValueError) as exc:
                self.add(f, f"cannot be read as .npy ({exc})")
                continue
            if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
                self.add(f, f"dtype {arr.dtype}; labels must be integers")
                continue
            if t.task_target is not TaskTarget.MULTILABEL_CLASSIFICATION and arr.ndim != 1:
                self.add(f, f"shape {arr.shape}; {t.task_target.name} labels are stored as (N,)")
            if n is not None and len(arr) != n:
                self.add(f, f"has {len(arr)} labels but the dataset has {n} images")
            try:
                normalize_labels(arr, t.description(info.id, info.domain))
            except (ValueError, TypeError) as exc:
                self.add(f, str(exc))

    def splits(self, info: DatasetInfo, n: int | None, folder: str, counts: dict[str, int]) -> None:
        seen: dict[int, str] = {}
        base = self.path(folder)
        for split in SPLITS:
            f = os.path.join(base, f"{split}.txt")
            want = counts.get(split)
            if file_kind(f) == "missing":
                if want:
                    self.add(f, f"missing; info.yaml {folder}_num_samples.{split} is {want}")
                continue
            try:
                rows = read_split(f, n if n is not None else np.iinfo(np.int64).max)
            except MedIMetaFileError as exc:
                self.add(f, str(exc).removeprefix(f"{f}: "))
                continue
            if want is not None and len(rows) != want:
                self.add(f, f"lists {len(rows)} images, info.yaml {folder}_num_samples.{split} is {want}")
            if not len(rows):
                self.add(f, "empty; an empty split has no file", "warning")
            clash = [int(r) for r in rows if int(r) in seen]
            if clash:
                self.add(f, f"images {clash[:5]} are also in {seen[clash[0]]}.txt")
            seen.update((int(r), split) for r in rows)
        if seen and n is not None and len(seen) != n:
            self.add(base, f"the splits cover {len(seen)} of {n} images", "warning")

    def annotations(self, n: int | None) -> None:
        f = self.path("annotations.csv")
        if file_kind(f) == "missing":
            self.add(f, "missing", "warning")
            return
        try:
            rows = list(csv.reader(io.StringIO(read_text(f), newline="")))
        except MedIMetaFileError as exc:
            self.add(f, str(exc).removeprefix(f"{f}: "))
            return
        if not rows or rows[0][:1] != ["filepath"]:
            self.add(f, f"first column must be 'filepath', got {rows[0][:1] if rows else 'an empty file'}")
        elif n is not None and len(rows) - 1 != n:
            self.add(f, f"has {len(rows) - 1} rows, the dataset has {n} images")


def validate_medimeta(dataset_dir: str | os.PathLike[str]) -> ValidationReport:
    """Check one dataset folder and report every problem by file.

    Examples:
        >>> import tempfile
        >>> from torchcross.datasets.medimeta.writer import write_synthetic_medimeta
        >>> path = write_synthetic_medimeta(tempfile.mkdtemp(), "toy", num_images=10, image_size=4)
        >>> validate_medimeta(path).ok
        True
        >>> os.remove(os.path.join(path, "splits", "val.txt"))
        >>> print(validate_medimeta(path))  # doctest: +ELLIPSIS
        /...toy: 2 problem(s)
          splits/val.txt
            [error] missing; info.yaml splits_num_samples.val is 2
          splits
            [warning] the splits cover 8 of 10 images
    """
    dataset_dir = os.fspath(dataset_dir)
    check = _Checker(dataset_dir)
    if not os.path.isdir(dataset_dir):
        check.add(dataset_dir, "not a directory")
        return ValidationReport(dataset_dir, tuple(check.problems))
    try:
        info = read_info(dataset_dir)
    except MedIMetaFileError as exc:
        f = check.path("info.yaml")
        check.add(f, str(exc).removeprefix(f"{f}: "))
        return ValidationReport(dataset_dir, tuple(check.problems))
    check.catalogue(info)
    n = check.images(info)
    check.labels(info, n)
    check.splits(info, n, "splits", dict(info.splits_num_samples))
    check.splits(info, n, "original_splits", dict(info.original_splits_num_samples))
    check.annotations(n)
    return ValidationReport(dataset_dir, tuple(check.problems))


def validate_all(data_path: str | os.PathLike[str]) -> dict[str, ValidationReport]:
    """Validate every folder with an ``info.yaml`` under ``data_path``: ``{folder: report}``.

    A folder whose ``info.yaml`` is broken (not a regular file, not UTF-8, malformed) is
    reported with that error; hidden folders are skipped.
    """
    data_path = os.fspath(data_path)
    return {
        entry: validate_medimeta(os.path.join(data_path, entry))
        for entry in sorted(os.listdir(data_path))
        if not entry.startswith(".")
        and os.path.isdir(os.path.join(data_path, entry))
        and os.path.lexists(os.path.join(data_path, entry, "info.yaml"))
    }


def main(argv: list[str] | None = None) -> int:
    """Print the reports of ``DATA_PATH`` (all datasets, or the ids given); exit 1 on errors."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m torchcross.datasets.medimeta.validate DATA_PATH [DATASET_ID ...]")
        return 2
    root, ids = args[0], args[1:]
    reports = {i: validate_medimeta(os.path.join(root, i)) for i in ids} if ids else validate_all(root)
    for report in reports.values():
        print(report)
    return 0 if all(r.ok for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
