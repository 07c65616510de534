"""Meta-Dataset's converted records read directly: no TensorFlow, no protobuf package.

Meta-Dataset (Triantafillou et al., ICLR 2020) converts each of its ten sources to a folder holding
``dataset_spec.json`` (the class names and which classes belong to which split) and one TFRecord file
per class (``<class id>.tfrecords``, the spec's ``file_pattern``), each record a ``tf.train.Example``
with an encoded image (``image``) and the class id (``label``).
[`MetaDatasetSource`][MetaDatasetSource] reads one source as a multi-class task over its classes.

**Splits are splits of classes.** Meta-Dataset assigns whole classes to train, validation and test
(``classes_per_split``), so ``split="train"`` is every image of the training classes, with the classes
numbered from 0 in spec order and their names kept; ``split=None`` is all classes. The three splits of
one source therefore have different classes (a source's ``val`` task is not the ``train`` task's
held-out images). Sources with no classes in a split (Traffic Signs and MSCOCO are test-only or
validation/test-only) list only the splits they have in ``info["splits"]``.

**The index.** The first open of a source reads each class file once, checks every record (length
CRC, data CRC, that it is an Example with one ``image`` and one ``label`` equal to the file's class)
and stores the records' byte offsets in ``torchcross_index.npz`` beside the records (written
atomically, keyed by each file's size and modification time: a changed file is indexed again). Later
opens only load the index; a read then seeks to the image bytes of one record. Data CRCs are checked
when a file is indexed, and on every read with ``verify_crc=True``. A folder that cannot be written
keeps its index in memory for the process (one warning). A corrupt record is a ``ValueError`` naming
the file and the byte offset.

Examples:
    >>> import tempfile
    >>> root = write_synthetic_meta_dataset(tempfile.mkdtemp(), sources=("aircraft",))
    >>> src = MetaDatasetSource(root, "aircraft", split="train", image_size=16)
    >>> src.task_description.task_identifier, src.task_description.num_classes
    ('aircraft/class', 4)
    >>> src.get_batch([0, 1])[0].shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from torchcross.datasets._images import Stats
from torchcross.datasets._tfrecord import (
    FOOTER_SIZE,
    HEADER_SIZE,
    crc32c_segments,
    encode_example,
    mask,
    masked_crc32c,
    parse_example,
    read_record_header,
    write_tfrecord,
)
from torchcross.datasets.image_files import ImageFilesTaskSource, decode_image_bytes
from torchcross.tasks.catalogue import DatasetEntry, TaskEntry
from torchcross.tasks.task import TaskDescription, TaskTarget

__all__ = [
    "META_DATASET_SOURCES",
    "MetaDatasetIndexWarning",
    "MetaDatasetSource",
    "open_meta_dataset",
    "scan_meta_dataset",
    "synthetic_color",
    "write_synthetic_meta_dataset",
]

META_DATASET_SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ilsvrc_2012": ("ImageNet (ILSVRC-2012)", "natural object photographs", ("imagenet",)),
    "omniglot": ("Omniglot", "handwritten characters", ("omniglot",)),
    "aircraft": ("FGVC-Aircraft", "aircraft photographs", ("fgvc-aircraft",)),
    "cu_birds": ("CUB-200-2011", "bird photographs", ("cub-200-2011",)),
    "dtd": ("Describable Textures", "textures", ("dtd",)),
    "quickdraw": ("Quick, Draw!", "sketches", ("quickdraw",)),
    "fungi": ("FGVCx Fungi", "fungi photographs", ("fgvcx-fungi",)),
    "vgg_flower": ("VGG Flowers 102", "flower photographs", ("oxford-flowers-102",)),
    "traffic_sign": ("German Traffic Signs", "traffic sign photographs", ("gtsrb",)),
    "mscoco": ("MS-COCO", "natural object photographs", ("mscoco",)),
}
"""The ten sources of Meta-Dataset (Triantafillou et al., 2020, section 3.1): ``{spec name: (name,
domain, upstream datasets)}``. ImageNet and MS-COCO share a domain (everyday objects in photographs);
each other source is its own domain."""

INDEX_FILE = "torchcross_index.npz"
_INDEX_VERSION = 1
_SPLITS = {"train": "TRAIN", "val": "VALID", "test": "TEST"}
_TASK = "class"
_MEMORY_INDEX: dict[tuple[str, str, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
_WARNED: set[str] = set()


class MetaDatasetIndexWarning(UserWarning):
    """The record index of a Meta-Dataset source could not be stored beside its records."""


# -- dataset_spec.json ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    folder: str
    name: str
    class_names: tuple[str, ...]  # by class id
    split_classes: dict[str, range]  # "train"/"val"/"test" -> class ids
    images_per_class: tuple[int, ...]
    file_pattern: str

    def class_files(self, class_id: int) -> list[str]:
        if self.file_pattern == "{}.tfrecords":
            return [f"{class_id}.tfrecords"]
        prefix = f"{class_id}_"
        found = sorted(
            f for f in os.listdir(self.folder) if f.startswith(prefix) and f.endswith(".tfrecords")
        )
        if not found:
            raise FileNotFoundError(
                f"{self.folder!r}: dataset_spec.json lists class {class_id} but there is no "
                f"{class_id}_*.tfrecords file (file_pattern {self.file_pattern!r})"
            )
        return found


def _count(value: Any) -> int:
    return int(sum(int(v) for v in value.values())) if isinstance(value, dict) else int(value)


def _read_spec(folder: str) -> _Spec:
    path = os.path.join(folder, "dataset_spec.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path!r}: {exc}") from exc
    try:
        return _parse_spec(folder, raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"{path!r} is not a Meta-Dataset DatasetSpecification ({type(exc).__name__}: {exc}); "
            "regenerate it with Meta-Dataset's dataset_conversion"
        ) from exc


def _parse_spec(folder: str, raw: dict[str, Any]) -> _Spec:
    kind = raw.get("__class__", "DatasetSpecification")
    names = {int(k): str(v) for k, v in raw["class_names"].items()}
    n = len(names)
    if sorted(names) != list(range(n)):
        raise ValueError(f"class ids must be 0..{n - 1} without gaps, got {sorted(names)[:10]}...")
    if kind == "DatasetSpecification":
        per_split = [int(raw["classes_per_split"][s]) for s in ("TRAIN", "VALID", "TEST")]
        counts = {int(k): _count(v) for k, v in raw["images_per_class"].items()}
    elif kind == "BiLevelDatasetSpecification":
        supers = raw["superclasses_per_split"]
        per_super = {int(k): int(v) for k, v in raw["classes_per_superclass"].items()}
        per_split, start = [], 0
        for s in ("TRAIN", "VALID", "TEST"):
            stop = start + int(supers[s])
            per_split.append(sum(per_super[i] for i in range(start, stop)))
            start = stop
        counts = {int(k): _count(v) for k, v in raw["images_per_class"].items()}
    elif kind == "HierarchicalDatasetSpecification":
        # ImageNet: a WordNet subgraph per split; its leaves are the split's classes
        per_split, counts = [], {}
        ids = {v: k for k, v in names.items()}
        for s in ("TRAIN", "VALID", "TEST"):
            leaves = [node["wn_id"] for node in raw["split_subgraphs"][s] if not node["children_ids"]]
            per_split.append(len(leaves))
            for wn_id in leaves:
                counts[ids[wn_id]] = int(raw["images_per_class"][s][wn_id])
    else:
        raise ValueError(f"unknown __class__ {kind!r}")
    if sum(per_split) != n or sorted(counts) != list(range(n)):
        raise ValueError(f"the splits count {per_split} classes and images_per_class {len(counts)}, not {n}")
    pattern = str(raw.get("file_pattern", "{}.tfrecords"))
    if pattern not in ("{}.tfrecords", "{}_{}.tfrecords"):
        raise ValueError(f"file_pattern must be '{{}}.tfrecords' or '{{}}_{{}}.tfrecords', got {pattern!r}")
    bounds = np.cumsum([0, *per_split]).tolist()
    return _Spec(
        folder=folder,
        name=str(raw.get("name", os.path.basename(folder))),
        class_names=tuple(names[i] for i in range(n)),
        split_classes={s: range(bounds[i], bounds[i + 1]) for i, s in enumerate(_SPLITS)},
        images_per_class=tuple(counts[i] for i in range(n)),
        file_pattern=pattern,
    )


# -- the record index ------------------------------------------------------------------------------------


def _index_records(path: str, class_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read every record of ``path``: ``(record offsets, image offsets, image lengths)``, all checked.

    The records are walked by their lengths (each checked against the file's end), then the length
    and data CRCs of all records are computed at once; the first bad record in file order is reported.
    The file is read whole (one class file at a time: Meta-Dataset's largest are about 150 MB).
    """
    with open(path, "rb") as f:
        data = f.read()
    return _check_records(memoryview(data), len(data), path, class_id)


def _check_records(
    buf: memoryview, size: int, path: str, class_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets, lengths = [], []
    pos = 0
    while pos < size:
        if size - pos < HEADER_SIZE:
            raise ValueError(
                f"{path!r}: truncated record header at byte offset {pos} ({size - pos} of 12 bytes)"
            )
        (length,) = struct.unpack_from("<Q", buf, pos)
        if pos + HEADER_SIZE + length + FOOTER_SIZE > size:
            try:  # a bad length CRC explains a bad length: say so first
                read_record_header(bytes(buf[pos : pos + HEADER_SIZE]), size, pos)
            except ValueError as exc:
                raise ValueError(f"{path!r}: {exc}") from None
        offsets.append(pos)
        lengths.append(length)
        pos += HEADER_SIZE + length + FOOTER_SIZE
    rec = np.asarray(offsets, np.int64)
    n = np.asarray(lengths, np.int64)
    arr = np.frombuffer(buf, np.uint8)
    stored_len_crc = arr[(rec[:, None] + np.arange(8, 12)).reshape(-1)].view("<u4")
    stored_data_crc = arr[(rec[:, None] + HEADER_SIZE + n[:, None] + np.arange(4)).reshape(-1)].view("<u4")
    bad_len = mask(crc32c_segments(buf, rec, np.full(len(rec), 8))) != stored_len_crc
    bad_data = mask(crc32c_segments(buf, rec + HEADER_SIZE, n)) != stored_data_crc
    for i in np.flatnonzero(bad_len | bad_data)[:1].tolist():
        what = "length" if bad_len[i] else "data"
        raise ValueError(f"{path!r}: bad {what} CRC in the record at byte offset {int(rec[i])}")
    img_off = np.empty(len(rec), np.int64)
    img_len = np.empty(len(rec), np.int64)
    for i, (o, m) in enumerate(zip(offsets, lengths)):
        start, stop = _image_range(buf[o + HEADER_SIZE : o + HEADER_SIZE + m], path, o, class_id)
        img_off[i] = o + HEADER_SIZE + start
        img_len[i] = stop - start
    return rec, img_off, img_len


def _image_range(data: bytes | memoryview, path: str, offset: int, class_id: int) -> tuple[int, int]:
    where = f"{path!r}: the record at byte offset {offset}"
    try:
        features = parse_example(data)
    except ValueError as exc:
        raise ValueError(f"{where} is not a tf.train.Example: {exc}") from None
    if set(features) != {"image", "label"}:
        raise ValueError(
            f"{where} has features {sorted(features)}; Meta-Dataset records have exactly 'image' and 'label'"
        )
    kind, images = features["image"]
    if kind != "bytes_list" or len(images) != 1:
        raise ValueError(f"{where}: 'image' must be one bytes value, got a {kind} of {len(images)}")
    kind, labels = features["label"]
    if kind != "int64_list" or len(labels) != 1:
        raise ValueError(f"{where}: 'label' must be one int64 value, got a {kind} of {len(labels)}")
    if labels[0] != class_id:
        raise ValueError(f"{where} has label {labels[0]}, but the file holds class {class_id}")
    return images[0]


def _load_saved_index(path: str) -> dict[str, tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """``{file: (size, mtime_ns, record offsets, image offsets, image lengths)}``; ``{}`` if unusable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != _INDEX_VERSION:
                return {}
            files, sizes, mtimes, counts = z["files"], z["sizes"], z["mtimes"], z["counts"]
            arrays = [z["record_offsets"], z["image_offsets"], z["image_lengths"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    if not len(files) == len(sizes) == len(mtimes) == len(counts) or (counts < 0).any():
        return {}
    if any(len(a) != int(counts.sum()) for a in arrays):
        return {}
    bounds = np.cumsum([0, *counts.tolist()])
    return {
        str(f): (int(s), int(m), *(a[bounds[i] : bounds[i + 1]] for a in arrays))  # type: ignore[misc,unused-ignore]
        for i, (f, s, m) in enumerate(zip(files, sizes, mtimes))
    }


def _save_index(folder: str, entries: dict[str, tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]) -> None:
    names = sorted(entries)
    fd, tmp = tempfile.mkstemp(prefix=".torchcross_index.", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                version=np.int64(_INDEX_VERSION),
                files=np.array(names, dtype=np.str_),
                sizes=np.array([entries[n][0] for n in names], np.int64),
                mtimes=np.array([entries[n][1] for n in names], np.int64),
                counts=np.array([len(entries[n][2]) for n in names], np.int64),
                record_offsets=np.concatenate([entries[n][2] for n in names] or [np.zeros(0, np.int64)]),
                image_offsets=np.concatenate([entries[n][3] for n in names] or [np.zeros(0, np.int64)]),
                image_lengths=np.concatenate([entries[n][4] for n in names] or [np.zeros(0, np.int64)]),
            )
        os.replace(tmp, os.path.join(folder, INDEX_FILE))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _record_index(folder: str, files: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The records of ``files`` (``{file name: class id}``): loaded, or built and stored once."""
    saved = _load_saved_index(os.path.join(folder, INDEX_FILE))
    out, changed = {}, False
    for name, class_id in files.items():
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path!r} does not exist, but {os.path.join(folder, 'dataset_spec.json')!r} lists class "
                f"{class_id}; the source folder is incomplete (convert or copy it again)"
            ) from None
        key = (folder, name, st.st_size, st.st_mtime_ns)
        entry = saved.get(name)
        if entry is not None and entry[:2] == (st.st_size, st.st_mtime_ns):
            out[name] = entry[2:]
        elif key in _MEMORY_INDEX:
            out[name] = _MEMORY_INDEX[key]
        else:
            out[name] = _index_records(path, class_id)
            saved[name] = (st.st_size, st.st_mtime_ns, *out[name])
            changed = True
    if changed:
        try:
            _save_index(folder, saved)
        except OSError as exc:
            for name in files:
                st = os.stat(os.path.join(folder, name))
                _MEMORY_INDEX[(folder, name, st.st_size, st.st_mtime_ns)] = out[name]
            if folder not in _WARNED:
                _WARNED.add(folder)
                warnings.warn(
                    f"cannot store the record index in {folder!r} ({exc}); it is kept in memory and "
                    "rebuilt in every new process (make the folder writable to keep it)",
                    MetaDatasetIndexWarning,
                    stacklevel=4,
                )
    return out


# -- the task source -------------------------------------------------------------------------------------


def _source_folder(root: str | os.PathLike[str], source: str | None) -> str:
    root = os.fspath(root)
    if os.path.isfile(os.path.join(root, "dataset_spec.json")) and (
        source is None or os.path.basename(os.path.normpath(root)) == source
    ):
        return root
    if source is None:
        raise ValueError(f"{root!r} has no dataset_spec.json; pass source= (one of its subfolders)")
    folder = os.path.join(root, source)
    if not os.path.isfile(os.path.join(folder, "dataset_spec.json")):
        have = sorted(
            d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "dataset_spec.json"))
        )
        raise ValueError(
            f"no Meta-Dataset source {source!r} under {root!r} (no {source}/dataset_spec.json); "
            f"sources found: {have}"
        )
    return folder


class MetaDatasetSource(ImageFilesTaskSource):
    """One converted Meta-Dataset source as a multi-class task over its classes.

    Args:
        root: the source's folder (holding ``dataset_spec.json``), or a folder of source folders.
        source: the source folder's name under ``root`` (e.g. ``"aircraft"``); ``None`` when ``root``
            is the source folder.
        split: ``"train"``, ``"val"``, ``"test"`` (the images of that split's classes, classes numbered
            from 0 in spec order) or ``None`` (all classes).
        channels: 1 (grey) or 3 (RGB).
        image_size: every image is resized to this (Meta-Dataset's images vary in size; it uses 84 or
            126 pixels).
        output, mean, std: as for [`ImageFilesTaskSource`][ImageFilesTaskSource].
        verify_crc: check each record's data CRC on every read too (else only when indexing).

    Raises:
        ValueError: an unknown split or source, a bad spec, ``image_size=None``, or a corrupt record
            (naming the file and byte offset).
        FileNotFoundError: a class file the spec lists is missing.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        source: str | None = None,
        split: Literal["train", "val", "test"] | None = None,
        *,
        channels: Literal[1, 3] = 3,
        image_size: int | tuple[int, int] | None = 84,
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
        verify_crc: bool = False,
    ) -> None:
        folder = _source_folder(root, source)
        if split is not None and split not in _SPLITS:
            raise ValueError(f"split must be 'train', 'val', 'test' or None, got {split!r}")
        if image_size is None:
            raise ValueError(
                f"Meta-Dataset images vary in size; pass image_size= (e.g. 84) to read {folder!r} "
                "(in torchcross run: [data] image_size)"
            )
        spec = _read_spec(folder)
        self.folder, self.spec_name, self.split = folder, spec.name, split
        self.dataset_id = os.path.basename(os.path.normpath(folder))
        class_ids = range(len(spec.class_names)) if split is None else spec.split_classes[split]
        if len(class_ids) < 2:
            raise ValueError(
                f"Meta-Dataset source {self.dataset_id!r} has {len(class_ids)} classes in split {split!r}; "
                f"its splits with classes: {[s for s, r in spec.split_classes.items() if len(r) >= 2]}"
            )
        files = {name: c for c in class_ids for name in spec.class_files(c)}
        index = _record_index(folder, files)
        paths, labels, rec_off, img_off, img_len = [], [], [], [], []
        for new_label, c in enumerate(class_ids):
            n = 0
            for name in spec.class_files(c):
                r, o, ln = index[name]
                paths.extend([os.path.join(folder, name)] * len(r))
                rec_off.append(r)
                img_off.append(o)
                img_len.append(ln)
                n += len(r)
            if n != spec.images_per_class[c]:
                raise ValueError(
                    f"{folder!r}: class {c} has {n} records but dataset_spec.json says "
                    f"{spec.images_per_class[c]}; the records or the spec are out of date"
                )
            labels.extend([new_label] * n)
        self.record_offsets = np.concatenate(rec_off) if rec_off else np.zeros(0, np.int64)
        self._image_offsets = np.concatenate(img_off) if img_off else np.zeros(0, np.int64)
        self._image_lengths = np.concatenate(img_len) if img_len else np.zeros(0, np.int64)
        self.verify_crc = bool(verify_crc)
        description = TaskDescription(
            "MULTICLASS_CLASSIFICATION",
            {i: spec.class_names[c] for i, c in enumerate(class_ids)},
            f"{self.dataset_id}/{_TASK}",
            _source_domain(self.dataset_id, spec.name),
        )
        super().__init__(
            paths, np.asarray(labels, np.int64), description, channels=channels, image_size=image_size,
            output=output, mean=mean, std=std,
        )  # fmt: skip

    def record_bytes(self, index: int) -> bytes:
        """The encoded image of example ``index`` (as stored in its record).

        Raises:
            ValueError: the file changed since it was indexed, or (``verify_crc=True``) a bad data CRC.
        """
        path, offset = self.paths[index], int(self.record_offsets[index])
        start, length = int(self._image_offsets[index]), int(self._image_lengths[index])
        with open(path, "rb") as f:
            if self.verify_crc:
                f.seek(offset)
                header = f.read(HEADER_SIZE)
                n = read_record_header(header, os.fstat(f.fileno()).st_size, offset)
                data = f.read(n + FOOTER_SIZE)
                if len(data) != n + FOOTER_SIZE or int.from_bytes(data[n:], "little") != masked_crc32c(
                    data[:n]
                ):
                    raise ValueError(f"{path!r}: bad data CRC in the record at byte offset {offset}")
                rel = start - offset - HEADER_SIZE
                return data[rel : rel + length]
            f.seek(start)
            data = f.read(length)
        if len(data) != length:
            raise ValueError(
                f"{path!r}: the record at byte offset {offset} is truncated (the file changed after it "
                "was indexed; open the source again to re-index it)"
            )
        return data

    def image(self, index: int) -> np.ndarray:
        """The uint8 image ``index`` (``(H, W)`` or ``(H, W, 3)``), decoded from its record."""
        offset = int(self.record_offsets[index])
        what = f"the image of the record at byte offset {offset} of {self.paths[index]!r}"
        return decode_image_bytes(self.record_bytes(index), self.channels, self.image_size, what)


def _source_domain(dataset_id: str, spec_name: str) -> str:
    known = META_DATASET_SOURCES.get(spec_name) or META_DATASET_SOURCES.get(dataset_id)
    return known[1] if known else dataset_id


# -- the format's scan / open / synthetic ----------------------------------------------------------------


def scan_meta_dataset(
    root: str | os.PathLike[str], **options: Any
) -> tuple[list[DatasetEntry], dict[str, str]]:
    """Catalogue entries of the Meta-Dataset sources under ``root`` (or of ``root`` itself).

    Reads only each ``dataset_spec.json``; one task per source, ``"class"``, over all its classes.
    ``options`` (``verify_crc``) are accepted for [`open_meta_dataset()`][open_meta_dataset]'s sake.

    Returns:
        ``(entries, problems)``: ``problems`` maps a folder to why it could not be read.

    Examples:
        >>> import tempfile
        >>> entries, problems = scan_meta_dataset(write_synthetic_meta_dataset(tempfile.mkdtemp()))
        >>> [(e.id, e.domain, e.info["splits"]) for e in entries][:1], problems
        ([('aircraft', 'aircraft photographs', ('train', 'val', 'test'))], {})
    """
    unknown = set(options) - {"verify_crc"}
    if unknown:
        raise TypeError(f"scan_meta_dataset() got unknown options {sorted(unknown)}; it takes verify_crc")
    root = os.fspath(root)
    if os.path.isfile(os.path.join(root, "dataset_spec.json")):
        folders = [root]
    elif os.path.isdir(root):
        folders = [
            os.path.join(root, d)
            for d in sorted(os.listdir(root))
            if os.path.isfile(os.path.join(root, d, "dataset_spec.json"))
        ]
    else:
        raise FileNotFoundError(f"Meta-Dataset root {root!r} is not a folder")
    specs, problems = {}, {}
    for folder in folders:
        try:
            specs[os.path.basename(os.path.normpath(folder))] = _read_spec(folder)
        except ValueError as exc:
            problems[folder] = str(exc)
    entries = []
    for dataset_id, spec in specs.items():
        name, domain, upstream = META_DATASET_SOURCES.get(
            spec.name, META_DATASET_SOURCES.get(dataset_id, (spec.name, dataset_id, ()))
        )
        overlaps = {d for d, s in specs.items() if d != dataset_id and _source_domain(d, s.name) == domain}
        classes = dict(enumerate(spec.class_names))
        entries.append(
            DatasetEntry(
                dataset_id,
                name,
                domain,
                (TaskEntry(dataset_id, _TASK, TaskTarget.MULTICLASS_CLASSIFICATION, classes),),
                domain_overlaps=frozenset(overlaps),
                info={
                    "input_size": None,
                    "splits": tuple(s for s, r in spec.split_classes.items() if len(r) >= 2),
                    "upstream": upstream,
                    "num_images": sum(spec.images_per_class),
                    "path": spec.folder,
                    "format": "meta-dataset",
                },
            )
        )
    return entries, problems


def open_meta_dataset(
    root: str | os.PathLike[str],
    dataset_id: str,
    task_name: str = _TASK,
    split: Literal["train", "val", "test"] | None = None,
    *,
    channels: Literal[1, 3] = 3,
    mean: Stats = None,
    std: Stats = None,
    image_size: int | None = None,
    verify_crc: bool = False,
) -> MetaDatasetSource:
    """The task ``task_name`` (``"class"``) of source ``dataset_id`` under ``root``, as a task source.

    Raises:
        ValueError: another task name, ``image_size=None`` (the images vary in size), or what
            [`MetaDatasetSource`][MetaDatasetSource] raises.
    """
    if task_name != _TASK:
        raise ValueError(f"Meta-Dataset source {dataset_id!r} has one task, {_TASK!r}, not {task_name!r}")
    return MetaDatasetSource(
        root, dataset_id, split, channels=channels, image_size=image_size, mean=mean, std=std,
        verify_crc=verify_crc,
    )  # fmt: skip


def _synthetic_image(rng: np.random.Generator, color: Sequence[int], grey: bool) -> bytes:
    from torchcross.datasets._optional import require

    image_mod = require("PIL.Image", "writing synthetic Meta-Dataset records")
    import io

    h, w = (int(v) for v in rng.integers(10, 24, size=2))
    arr = np.empty((h, w, 3), np.uint8)
    arr[...] = np.asarray(color, np.uint8)
    im = image_mod.fromarray(arr[..., 0] if grey else arr, "L" if grey else "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def synthetic_color(class_id: int, image: int) -> tuple[int, int, int]:
    """The colour of image ``image`` of class ``class_id`` in the synthetic sources (uniform images).

    Examples:
        >>> synthetic_color(1, 2)
        (46, 70, 33)
    """
    return ((class_id * 40 + image * 3) % 256, (class_id * 70) % 256, (image * 13 + 7 * class_id) % 256)


def write_synthetic_meta_dataset(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    sources: Sequence[str] = ("aircraft", "omniglot", "ilsvrc_2012"),
    classes_per_split: tuple[int, int, int] = (4, 2, 2),
    images_per_class: tuple[int, int] = (6, 10),
) -> str:
    """Write small Meta-Dataset sources (real TFRecord files and ``dataset_spec.json``) under ``root``.

    Each source gets ``sum(classes_per_split)`` classes of uniform PNG images of random sizes (10 to
    23 pixels; colours from `synthetic_color()`), between ``images_per_class[0]`` and
    ``images_per_class[1]`` per class. ``"omniglot"`` is written with a bi-level spec (alphabets of two
    characters, grey images) and ``"ilsvrc_2012"`` with a hierarchical one (a WordNet-like graph per
    split), as Meta-Dataset does; other names with a plain spec.

    Returns:
        ``root`` (as a str), to scan.

    Raises:
        ValueError: a source name that is not a folder name, or bad sizes.
    """
    root = os.fspath(root)
    lo, hi = images_per_class
    if not 2 <= lo <= hi or min(classes_per_split) < 0:
        raise ValueError(
            f"need 2 <= images_per_class[0] <= images_per_class[1] and non-negative classes, got "
            f"{images_per_class=}, {classes_per_split=}"
        )
    rng = np.random.default_rng(seed)
    for source in sources:
        if not source or os.sep in source or source.startswith("."):
            raise ValueError(f"source names are folder names, got {source!r}")
        folder = os.path.join(root, source)
        os.makedirs(folder, exist_ok=True)
        n = sum(classes_per_split)
        grey = source in ("omniglot", "quickdraw")
        counts = [int(v) for v in rng.integers(lo, hi + 1, size=n)]
        names = [f"{source}_class_{c}" for c in range(n)]
        for c in range(n):
            payloads = (
                encode_example({"image": [_synthetic_image(rng, synthetic_color(c, i), grey)], "label": [c]})
                for i in range(counts[c])
            )
            write_tfrecord(os.path.join(folder, f"{c}.tfrecords"), payloads)
        spec = _synthetic_spec(source, names, counts, classes_per_split)
        with open(os.path.join(folder, "dataset_spec.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=2)
    return root


def _synthetic_spec(
    source: str, names: list[str], counts: list[int], per_split: tuple[int, int, int]
) -> dict[str, Any]:
    splits = ("TRAIN", "VALID", "TEST")
    common = {"name": source, "path": source, "file_pattern": "{}.tfrecords"}
    if source == "omniglot" and all(k % 2 == 0 for k in per_split):
        supers = {s: k // 2 for s, k in zip(splits, per_split)}
        n_super = sum(supers.values())
        return {
            "__class__": "BiLevelDatasetSpecification",
            **common,
            "superclasses_per_split": supers,
            "classes_per_superclass": {str(i): 2 for i in range(n_super)},
            "images_per_class": {str(c): k for c, k in enumerate(counts)},
            "superclass_names": {str(i): f"alphabet_{i}" for i in range(n_super)},
            "class_names": {str(c): name for c, name in enumerate(names)},
        }
    if source == "ilsvrc_2012":
        wn = [f"n{c:08d}" for c in range(len(names))]
        graphs, images, start = {}, {}, 0
        for s, k in zip(splits, per_split):
            leaves = wn[start : start + k]
            root_id = f"n9{splits.index(s):07d}"
            graphs[s] = [
                {"wn_id": root_id, "words": "entity", "children_ids": leaves, "parents_ids": []},
                *({"wn_id": w, "words": w, "children_ids": [], "parents_ids": [root_id]} for w in leaves),
            ][: 1 + k if k else 0]
            images[s] = {w: counts[start + j] for j, w in enumerate(leaves)}
            if k:
                images[s][root_id] = sum(images[s].values())
            start += k
        return {
            "__class__": "HierarchicalDatasetSpecification",
            **common,
            "split_subgraphs": graphs,
            "images_per_class": images,
            "class_names": {str(c): w for c, w in enumerate(wn)},
        }
    return {
        "__class__": "DatasetSpecification",
        **common,
        "classes_per_split": dict(zip(splits, per_split)),
        "images_per_class": {str(c): k for c, k in enumerate(counts)},
        "class_names": {str(c): name for c, name in enumerate(names)},
    }
