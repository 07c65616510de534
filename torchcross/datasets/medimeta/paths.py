"""Names and files of a MedIMeta data path, handled safely.

Every dataset id and task name (from arguments or from ``info.yaml``) becomes a path
component, so `check_name()` keeps it inside the data root. `read_text()` opens
only regular files (a FIFO or a directory in place of a file is an error, never a hang)
and reports text that is not UTF-8. `install_folder()` replaces a dataset folder
by renames only, so a kill leaves the old dataset or the new one; `writer_leftovers()`
finds the hidden folders an interrupted
[`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta] left behind, and
`clean_writer_leftovers()` removes them (or puts a replaced dataset back).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat

from torchcross._io import process_alive, special_file_kind
from torchcross.datasets.medimeta._hdf5 import MedIMetaFileError

__all__ = [
    "DATASET_ENTRIES",
    "WRITER_FOLDER",
    "check_name",
    "check_replaceable",
    "clean_writer_leftovers",
    "install_folder",
    "read_text",
    "writer_folder",
    "writer_leftovers",
]

DATASET_ENTRIES = frozenset(
    {"info.yaml", "images.hdf5", "images", "task_labels", "splits", "original_splits", "annotations.csv"}
)
"""The entries of a MedIMeta dataset folder: ``overwrite=True`` replaces only folders made of these
(and, inside ``images/``, ``task_labels/`` and the split folders, only of the files the writer makes)."""

WRITER_FOLDER = re.compile(r"^\.(?P<id>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
"""Hidden folders of [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta]:
``.<id>.tmp-<pid>-<hex>`` (a dataset being
written) and ``.<id>.old-<pid>-<hex>`` (the dataset it replaces, until it is deleted)."""


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is one plain path component, else raise ``ValueError``.

    Rejected: non-strings, empty names, ``.`` and ``..``, names starting with ``.``,
    and names holding ``/``, ``\\``, the OS separators or NUL.

    Examples:
        >>> check_name("disease class", "task name")
        'disease class'
        >>> check_name("../secret", "dataset id")
        Traceback (most recent call last):
        ...
        ValueError: dataset id '../secret' would leave the data root: ...
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}: {name!r}")
    seps = {"/", "\\", "\0", os.sep} | ({os.altsep} if os.altsep else set())
    if not name or name.startswith(".") or any(s in name for s in seps) or os.path.isabs(name):
        raise ValueError(
            f"{what} {name!r} would leave the data root: names must be one folder or file name, "
            "without '/', '\\', a leading '.', or '..'"
        )
    return name


def read_text(path: str) -> str:
    """The UTF-8 text of a regular file; opening never blocks (FIFOs, devices are refused).

    Raises:
        MedIMetaFileError: naming the file if it is missing, not a regular file, or not UTF-8.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise MedIMetaFileError(f"{path}: missing") from None
    except IsADirectoryError:
        raise MedIMetaFileError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise MedIMetaFileError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        kind = special_file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise MedIMetaFileError(f"{path}: is {kind}, not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MedIMetaFileError(
            f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None


def writer_leftovers(data_path: str, dataset_id: str | None = None) -> dict[str, str]:
    """``{folder name: what it is}`` of the hidden folders of interrupted writes (dead processes).

    Examples:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> os.mkdir(os.path.join(root, ".toy.tmp-999999999-0123abcd"))
        >>> list(writer_leftovers(root))
        ['.toy.tmp-999999999-0123abcd']
    """
    out = {}
    for entry in sorted(os.listdir(data_path)):
        m = WRITER_FOLDER.match(entry)
        if m is None or (dataset_id is not None and m["id"] != dataset_id):
            continue
        if not os.path.isdir(os.path.join(data_path, entry)) or process_alive(int(m["pid"])):
            continue
        what = "a partly written copy" if m["kind"] == "tmp" else "the replaced copy"
        out[entry] = (
            f"{what} of dataset {m['id']!r} left by an interrupted write_medimeta (process {m['pid']}); "
            f"writing {m['id']!r} again cleans it up, or delete it"
        )
    return out


def writer_folder(root: str, dataset_id: str, kind: str) -> str:
    """A new hidden folder name ``<root>/.<id>.<kind>-<pid>-<hex>`` (``kind``: ``tmp`` or ``old``)."""
    return os.path.join(root, f".{dataset_id}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


_WRITER_FILES = {
    "images": re.compile(r"^\d{6,}\.tiff$"),
    "task_labels": re.compile(r"^[^./\\][^/\\]*\.npy$"),
    "splits": re.compile(r"^(?:train|val|test)\.txt$"),
    "original_splits": re.compile(r"^(?:train|val|test)\.txt$"),
}
"""The files [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta] writes in each
sub-folder; its top-level files are ``info.yaml``, ``images.hdf5`` and ``annotations.csv``."""


def _foreign_entries(target: str) -> list[str]:
    """The paths under ``target`` (relative, sorted) that the writer would not have made.

    Only regular files and real folders named as the writer names them count as its own:
    anything else (another file, a link, a FIFO, a nested folder) is foreign.
    """
    foreign: list[str] = []
    for entry in sorted(os.listdir(target)):
        path = os.path.join(target, entry)
        mode = os.lstat(path).st_mode
        if entry in _WRITER_FILES and stat.S_ISDIR(mode):
            pattern = _WRITER_FILES[entry]
            foreign += [
                f"{entry}/{name}"
                for name in sorted(os.listdir(path))
                if not (pattern.match(name) and stat.S_ISREG(os.lstat(os.path.join(path, name)).st_mode))
            ]
        elif entry not in DATASET_ENTRIES or entry in _WRITER_FILES or not stat.S_ISREG(mode):
            foreign.append(entry)
    return foreign


def check_replaceable(target: str) -> None:
    """Raise ``FileExistsError`` unless ``target`` is a MedIMeta dataset folder (or empty).

    Only folders holding nothing but files that
    [`write_medimeta()`][torchcross.datasets.medimeta.write_medimeta] writes (``info.yaml``,
    ``images.hdf5``, ``annotations.csv``, ``images/NNNNNN.tiff``, ``task_labels/<task>.npy``,
    ``splits/`` and ``original_splits/`` ``train|val|test.txt``) and an ``info.yaml`` are
    replaced, so ``overwrite=True`` never deletes a file it could not have written: the whole
    tree is checked, not only its top level.
    """
    if os.path.islink(target) or not os.path.isdir(target):
        raise FileExistsError(
            f"{target} exists and is not a dataset folder (a file or a link); overwrite=True replaces "
            "only MedIMeta dataset folders: move it away or choose another dataset_id"
        )
    foreign = _foreign_entries(target)
    entries = os.listdir(target)
    if foreign or (entries and "info.yaml" not in entries):
        more = f" (and {len(foreign) - 5} more)" if len(foreign) > 5 else ""
        what = f"holds {foreign[:5]}{more}, which are" if foreign else "has no info.yaml, so it is"
        raise FileExistsError(
            f"{target} {what} not part of a MedIMeta dataset; overwrite=True deletes only files a "
            "MedIMeta writer makes, and left the folder untouched: move those files away or choose "
            "another dataset_id"
        )


def install_folder(tmp: str, target: str) -> None:
    """Move the finished folder ``tmp`` to ``target`` by renames: a kill leaves a whole dataset.

    An existing ``target`` is checked again with `check_replaceable()` (files may have been
    added while the new copy was written), renamed to a hidden ``.old`` folder and deleted last;
    a kill between the renames leaves both copies hidden, and
    `clean_writer_leftovers()` puts the old one back.
    """
    root = os.path.dirname(target)
    dataset_id = os.path.basename(target)
    if not os.path.lexists(target):
        os.rename(tmp, target)
        return
    check_replaceable(target)
    old = writer_folder(root, dataset_id, "old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def clean_writer_leftovers(root: str, dataset_id: str) -> list[str]:
    """Remove the leftovers of interrupted writes of ``dataset_id``; returns the folders handled.

    A replaced copy whose dataset folder is gone is renamed back to it (the interrupted
    write had not installed its new copy); every other leftover is deleted.
    """
    handled = []
    target = os.path.join(root, dataset_id)
    for entry in sorted(writer_leftovers(root, dataset_id), key=lambda e: ".old-" not in e):
        path = os.path.join(root, entry)
        if ".old-" in entry and not os.path.lexists(target):
            os.rename(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)
        handled.append(entry)
    return handled
