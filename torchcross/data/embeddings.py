"""An on-disk cache of a frozen backbone's features: computed once, shared by every episode that reads them.

Methods with a frozen backbone (a linear probe, nearest centroid, CLIP zero-shot) need each image's features,
not the image. [`embed()`][embed] computes them once per (backbone, weights,
preprocessing, data), over the whole source in batches (eval mode, no autograd), and keeps them in one file;
[`EmbeddedSource`][EmbeddedSource] serves them as a task source with the source's
labels, so every episode dataset built over it (any shot count, seed or method, in any run) yields the same
episodes as over the images, with features as inputs.

The file is [safetensors](https://huggingface.co/docs/safetensors) (one ``features`` tensor, ``(N, D)``,
float32 or float16), readable by the ``safetensors`` package; its metadata hold the manifest: the full key
(backbone identity and a SHA-256 digest of its weights, preprocessing, data identity), the shape, the dtype,
the torchcross version and a SHA-256 checksum of the array. No pickle is involved; reads are memory-mapped.
The file is written under a temporary name, flushed, and renamed into place, so a killed process leaves no
half file under the cache's name (only a hidden temporary, removed by the next `embed()` into that folder).
A file is used only if its manifest and checksum match: a truncated or edited file, or one written for
another key, is refused with an [`EmbeddingCacheError`][EmbeddingCacheError]
saying which part differs. In a cache folder the file name is the key's digest, so another backbone,
weights, preprocessing or data set gets a file of its own; two processes filling one key both write a
whole file and the last rename wins.

Examples:
    >>> import tempfile, torch
    >>> from torchcross.data import TensorTaskSource, TaskDescription
    >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
    >>> src = TensorTaskSource(torch.randn(6, 4), [0, 1, 0, 1, 0, 1], d)
    >>> backbone = torch.nn.Linear(4, 3)
    >>> cache = tempfile.mkdtemp()
    >>> emb = embed(src, backbone, cache, preprocessing={"size": 4})
    >>> emb.features.shape, emb[[0, 5]].shape
    ((6, 3), torch.Size([2, 3]))
    >>> embed(src, backbone, cache, preprocessing={"size": 4}).path == emb.path  # read from disk
    True
    >>> x, y = EmbeddedSource(emb, src).get_batch([1, 2])
    >>> x.shape, y.tolist()
    (torch.Size([2, 3]), [1, 0])
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

import torchcross
from torchcross._checks import check_int
from torchcross._io import atomic_write, remove_stale_temp_files, special_file_kind
from torchcross.data.metadataset.episode_set import labels_checksum
from torchcross.data.sources import TaskSource, canonical_labels, label_tensor

__all__ = [
    "EmbeddedSource",
    "EmbeddingCacheError",
    "EmbeddingKey",
    "Embeddings",
    "data_identity",
    "embed",
    "load_embeddings",
    "weights_digest",
]

FORMAT = "torchcross.embeddings"
VERSION = 1
SUFFIX = ".safetensors"
_DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}
_STORAGE = {torch.float32: "F32", torch.float16: "F16"}
_ZERO_CHECKSUM = "sha256:" + "0" * 64
_MAX_HEADER = 1 << 24  # a manifest is a few KB; more is not ours
_KEY_PARTS = ("backbone", "preprocessing", "data")
_SOURCE_IDS = ("dataset_id", "task_name", "split", "original_split")  # not where it lies: caches move


class EmbeddingCacheError(ValueError):
    """A cached embeddings file that cannot be used: not ours, damaged, or written for another key."""


def _canonical_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON-able (dicts, lists, strings, numbers, booleans, None), got {value!r}: "
            f"{exc}; "
            "describe it with plain values (e.g. preprocessing.to_dict())"
        ) from None


def _plain(value: Any, what: str) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), checked to be JSON-able."""
    return json.loads(_canonical_json(value, what))


def weights_digest(module: nn.Module) -> str:
    """``"sha256:<hex>"`` of a module's ``state_dict``: every entry's name, dtype, shape and bytes.

    Changing any weight or buffer changes the digest; where the module lives (device) does not.

    Examples:
        >>> import torch
        >>> a = torch.nn.Linear(2, 2)
        >>> b = torch.nn.Linear(2, 2)
        >>> b.load_state_dict(a.state_dict())
        <All keys matched successfully>
        >>> weights_digest(a) == weights_digest(b)
        True
        >>> with torch.no_grad():
        ...     b.bias[0] += 1
        >>> weights_digest(a) == weights_digest(b)
        False
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode("utf-8") + b"\0")
        if not isinstance(value, torch.Tensor):  # extra state: hashed by its text
            digest.update(repr(value).encode("utf-8") + b"\0")
            continue
        t = value.detach().cpu().contiguous()
        digest.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"sha256:{digest.hexdigest()}"


def _file_digest(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def data_identity(source: Any, files: Sequence[str | os.PathLike[str]] = ()) -> dict[str, Any]:
    """What identifies a source's examples: its class, ids, size, a checksum of its labels, file digests.

    The labels checksum is [`labels_checksum()`][torchcross.data.metadataset.labels_checksum], the one
    episode sets are checked with; a source's ``dataset_id``, ``task_name``, ``split`` and
    ``original_split`` (a [`MedIMeta`][torchcross.datasets.medimeta.MedIMeta] source has them) are
    included when present, not the folder it lies in (a cache moves with its data). Images are not
    read: to tie the key to the image bytes as well, pass the image files (e.g. MedIMeta's
    ``images.hdf5``) as ``files``; their SHA-256 digests are then part of the key.

    Examples:
        >>> import torch
        >>> from torchcross.data import TensorTaskSource, TaskDescription
        >>> d = TaskDescription("BINARY_CLASSIFICATION", {0: "no", 1: "yes"}, "toy")
        >>> ident = data_identity(TensorTaskSource(torch.zeros(3, 2), [0, 1, 1], d))
        >>> ident["num_examples"], ident["task"]["task_identifier"], ident["labels"][:7]
        (3, 'toy', 'sha256:')
    """
    desc = source.task_description
    out: dict[str, Any] = {
        "source": f"{type(source).__module__}.{type(source).__qualname__}",
        "task": {
            "task_target": desc.task_target.name,
            "classes": {str(k): v for k, v in desc.classes.items()},
            "task_identifier": desc.task_identifier,
            "domain_identifier": desc.domain_identifier,
        },
        "num_examples": len(source),
        "labels": labels_checksum(canonical_labels(source)),
    }
    for name in _SOURCE_IDS:
        value = getattr(source, name, None)
        if isinstance(value, (str, int)):
            out[name] = value
    if isinstance(files, (str, os.PathLike)):
        raise TypeError(f"files must be a sequence of paths, not the single path {files!r}: pass [{files!r}]")
    if files:
        out["files"] = {os.path.basename(os.fspath(f)): _file_digest(f) for f in files}
    return out


@dataclass(frozen=True)
class EmbeddingKey:
    """What cached features depend on: the backbone (identity and weights), preprocessing and data.

    Each part is a JSON-able value; [`digest`][EmbeddingKey.digest] hashes
    the canonical JSON of all three.

    Examples:
        >>> a = EmbeddingKey({"name": "resnet18"}, {"size": 224}, {"labels": "sha256:1"})
        >>> b = EmbeddingKey({"name": "resnet18"}, {"size": 256}, {"labels": "sha256:1"})
        >>> a.digest == b.digest, a.differences(b)
        (False, ["preprocessing: 'size' is 224 here, 256 in the other"])
    """

    backbone: Any
    preprocessing: Any
    data: Any

    def __post_init__(self) -> None:
        for part in _KEY_PARTS:
            object.__setattr__(self, part, _plain(getattr(self, part), f"the embedding key's {part}"))

    def to_dict(self) -> dict[str, Any]:
        """The key as plain data: ``{"backbone": ..., "preprocessing": ..., "data": ...}``."""
        return {part: getattr(self, part) for part in _KEY_PARTS}

    @property
    def digest(self) -> str:
        """SHA-256 hex digest of the key's canonical JSON."""
        return hashlib.sha256(_canonical_json(self.to_dict(), "the embedding key").encode()).hexdigest()

    def differences(self, other: EmbeddingKey) -> list[str]:
        """One line per differing part, naming the entries that differ (empty: the same key)."""
        return [
            f"{part}: {_describe_difference(getattr(self, part), getattr(other, part))}"
            for part in _KEY_PARTS
            if getattr(self, part) != getattr(other, part)
        ]


def _describe_difference(mine: Any, theirs: Any) -> str:
    if isinstance(mine, dict) and isinstance(theirs, dict):
        lines = []
        for k in sorted(set(mine) | set(theirs)):
            if k not in theirs:
                lines.append(f"{k!r} only here")
            elif k not in mine:
                lines.append(f"{k!r} only in the other")
            elif mine[k] != theirs[k]:
                lines.append(f"{k!r} is {_short(mine[k])} here, {_short(theirs[k])} in the other")
        return "; ".join(lines)
    return f"{_short(mine)} here, {_short(theirs)} in the other"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, eq=False)
class Embeddings:
    """Features of every example of a source, ``(N, D)``, with their key and file.

    Attributes:
        features: ``(N, D)`` float32 or float16 array, memory-mapped read-only when read from a file.
        key: what they were computed from.
        path: the file they live in (``None``: computed in memory, not cached).
    """

    features: np.ndarray
    key: EmbeddingKey
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def width(self) -> int:
        """The feature width ``D``."""
        return int(self.features.shape[1])

    def __getitem__(self, indices: Any) -> torch.Tensor:
        """Features of ``indices`` (an int, a sequence or an array of them), as a new float32 tensor."""
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise IndexError(
                f"indices {bad.reshape(-1)[:10].tolist()} out of range for {n} embedded examples"
            )
        return torch.from_numpy(np.asarray(self.features[idx], dtype=np.float32))


class EmbeddedSource(TaskSource):
    """A source's examples as features: inputs are [`Embeddings`][Embeddings]
    rows, labels and task description are the source's.

    Episodes are functions of the labels, so an episode dataset over this source draws the same indices as
    one over the images: a linear probe (a
    [`FineTuner`][torchcross.learners.finetuner.FineTuner] over ``nn.Identity()``) or a
    [`ProtoNet`][torchcross.learners.protonet.ProtoNet] over ``nn.Identity()`` then trains on cached
    features instead of recomputing them every episode.

    Raises:
        ValueError: the embeddings and the source differ in length, or the embeddings were computed
            for other labels.
    """

    def __init__(self, embeddings: Embeddings, task_source: Any) -> None:
        if not isinstance(embeddings, Embeddings):
            raise TypeError(f"embeddings must be Embeddings (from embed()), got {type(embeddings).__name__}")
        labels = canonical_labels(task_source)
        if len(labels) != len(embeddings):
            raise ValueError(
                f"the embeddings hold {len(embeddings)} examples, the source {len(labels)}: "
                "embed this source (embed(source, backbone, ...)) and pass its embeddings"
            )
        data = embeddings.key.data
        if isinstance(data, dict) and "labels" in data and data["labels"] != labels_checksum(labels):
            raise ValueError(
                "the embeddings were computed for a source with other labels (their labels checksum "
                f"{data['labels']!r} differs from this source's): embed this source and pass its embeddings"
            )
        self.embeddings = embeddings
        self.task_description = task_source.task_description
        self.labels = labels
        self._label_tensor = label_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embeddings[index], self._label_tensor[index]

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features[indices], labels[indices])`` in one read."""
        idx = np.asarray(indices, dtype=np.int64)
        feats = self.embeddings[idx]
        return feats, self._label_tensor[torch.from_numpy(np.where(idx < 0, idx + len(self), idx))]


# ----------------------------------------------------------------------------------------------- file format


def _header(manifest: dict[str, Any], dtype: str, shape: tuple[int, int]) -> bytes:
    nbytes = shape[0] * shape[1] * _DTYPES[dtype].itemsize
    header = {
        "__metadata__": {"torchcross": json.dumps(manifest, sort_keys=True)},
        "features": {"dtype": dtype, "shape": list(shape), "data_offsets": [0, nbytes]},
    }
    text = json.dumps(header, sort_keys=True).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 64)  # data aligned to 64 bytes
    return struct.pack("<Q", len(text)) + text


def _refuse(path: Path, problem: str, fix: str = "") -> EmbeddingCacheError:
    fix = fix or "delete it (it is recomputed on the next embed()) or choose another cache"
    return EmbeddingCacheError(
        f"the embeddings file {str(path)!r} {problem}; torchcross does not use it: {fix}"
    )


def _read_header(path: Path) -> tuple[dict[str, Any], np.dtype[Any], tuple[int, int], int]:
    """The manifest, dtype, shape and data offset of ``path``, checked against its size."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise EmbeddingCacheError(f"cannot read the embeddings file {str(path)!r}: {exc.strerror}") from None
    kind = special_file_kind(info.st_mode)
    if kind is not None:
        raise _refuse(path, f"is {kind}, not a file", "move it away")
    size = info.st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _refuse(path, "is truncated (shorter than a header)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise _refuse(path, "is not a torchcross embeddings file (no safetensors header)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        manifest = json.loads(header["__metadata__"]["torchcross"])
        entry = header["features"]
        dtype_name, shape, offsets = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise _refuse(path, "is not a torchcross embeddings file (no torchcross manifest)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(path, "is not a torchcross embeddings file (no torchcross manifest)")
    if manifest.get("version") != VERSION:
        raise _refuse(
            path,
            f"has format version {manifest.get('version')!r}; this torchcross reads version {VERSION}",
        )
    if set(header) != {"__metadata__", "features"}:
        raise _refuse(path, f"holds other tensors ({sorted(set(header) - {'__metadata__'})})")
    if dtype_name not in _DTYPES:
        raise _refuse(path, f"stores dtype {dtype_name!r}; embeddings are float32 (F32) or float16 (F16)")
    if len(shape) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise _refuse(path, f"has shape {list(shape)}, not (examples, width)")
    dtype = _DTYPES[dtype_name]
    nbytes = shape[0] * shape[1] * dtype.itemsize
    if offsets != [0, nbytes] or manifest.get("shape") != list(shape) or manifest.get("dtype") != dtype_name:
        raise _refuse(path, "has a header that contradicts itself (shape, dtype or offsets)")
    if size != 8 + n + nbytes:
        problem = "is truncated" if size < 8 + n + nbytes else "has bytes after its data"
        raise _refuse(path, f"{problem}: {size} bytes, its header says {8 + n + nbytes}")
    return manifest, dtype, (int(shape[0]), int(shape[1])), 8 + n


def _checksum(array: np.ndarray) -> str:
    digest = hashlib.sha256()
    flat = array.reshape(-1)
    step = max(1, (8 << 20) // max(1, array.dtype.itemsize))
    for i in range(0, flat.shape[0], step):
        digest.update(np.ascontiguousarray(flat[i : i + step]).tobytes())
    return f"sha256:{digest.hexdigest()}"


def load_embeddings(
    path: str | os.PathLike[str], key: EmbeddingKey | None = None, *, verify: bool = True
) -> Embeddings:
    """Open an embeddings file written by [`embed()`][embed], memory-mapped.

    Args:
        path: the ``.safetensors`` file.
        key: the key the caller expects; a file written for another key is refused, naming the parts
            (backbone, preprocessing, data) and entries that differ.
        verify: check the SHA-256 checksum of the array (one read of the file).

    Raises:
        EmbeddingCacheError: the file is not a torchcross embeddings file, is truncated, has other
            bytes than it was written with, or was written for another key.

    Examples:
        >>> import tempfile, torch
        >>> from torchcross.data import TensorTaskSource, TaskDescription
        >>> d = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"})
        >>> src = TensorTaskSource(torch.randn(4, 2), [0, 1, 0, 1], d)
        >>> emb = embed(src, torch.nn.Identity(), tempfile.mkdtemp())
        >>> load_embeddings(emb.path, emb.key).features.shape
        (4, 2)
    """
    path = Path(path)
    manifest, dtype, shape, offset = _read_header(path)
    try:
        stored = EmbeddingKey(**{part: manifest["key"][part] for part in _KEY_PARTS})
    except (KeyError, TypeError):
        raise _refuse(path, "has a manifest without a complete key") from None
    if key is not None:
        diff = key.differences(stored)
        if diff:
            raise _refuse(
                path,
                "was computed for another key (here: what is asked, other: the file): " + " | ".join(diff),
                "delete it, or point the cache at a folder (each key gets a file of its own)",
            )
    if shape[0] * shape[1] == 0:
        features = np.zeros(shape, dtype=dtype)
    else:
        features = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    if verify and _checksum(features) != manifest.get("checksum"):
        raise _refuse(path, "has other bytes than it was written with (its checksum does not match)")
    return Embeddings(features, stored, path)


# ----------------------------------------------------------------------------------------------- computing


def _batches(source: Any, batch_size: int) -> Iterator[torch.Tensor]:
    n = len(source)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size), dtype=np.int64)
        if callable(getattr(source, "get_batch", None)):
            x = source.get_batch(idx)[0]
        else:
            x = torch.stack([torch.as_tensor(source[int(i)][0]) for i in idx])
        yield x


def _forward(backbone: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> Any:
    x = x.to(
        device=device, dtype=dtype if dtype is not None else (x.dtype if x.is_floating_point() else None)
    )
    out = backbone(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        what = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the backbone must return features of shape (batch, width), got {what} for a batch of "
            f"{x.shape[0]}; wrap it so that it returns the pooled features (e.g. a timm model with "
            "num_classes=0, or a torchvision ResNet with fc = nn.Identity())"
        )
    return out


class _Writer:
    """Writes the file under its temporary name, streaming the features batch by batch."""

    def __init__(self, compute: Iterator[torch.Tensor], n: int, manifest: dict[str, Any], dtype: str):
        self.compute, self.n, self.manifest, self.dtype = compute, n, manifest, dtype
        self.checksum = ""
        self.width = 0

    def __call__(self, tmp: Path) -> None:
        np_dtype = _DTYPES[self.dtype]
        digest = hashlib.sha256()
        with open(tmp, "xb") as fh:
            written = 0
            for feats in self.compute:
                block = np.ascontiguousarray(feats.detach().to("cpu", torch.float32).numpy().astype(np_dtype))
                if written == 0:
                    self.width = int(block.shape[1])
                    header = _header(
                        {**self.manifest, "shape": [self.n, self.width], "checksum": _ZERO_CHECKSUM},
                        self.dtype,
                        (self.n, self.width),
                    )
                    fh.write(header)
                data = block.tobytes()
                digest.update(data)
                fh.write(data)
                written += block.shape[0]
            if written != self.n:
                raise ValueError(f"the source yielded {written} inputs, its length is {self.n}")
            self.checksum = f"sha256:{digest.hexdigest()}"
            self._rewrite_header(fh)

    def _rewrite_header(self, fh: BinaryIO) -> None:
        header = _header(
            {**self.manifest, "shape": [self.n, self.width], "checksum": self.checksum},
            self.dtype,
            (self.n, self.width),
        )
        fh.seek(0)
        fh.write(header)  # the same length: only the checksum's digits changed
        fh.flush()


def embed(
    source: Any,
    backbone: nn.Module,
    cache: str | os.PathLike[str] | None = None,
    *,
    identity: Any = None,
    preprocessing: Any = None,
    data: Any = None,
    hash_weights: bool = True,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    storage_dtype: torch.dtype = torch.float32,
    verify: bool = True,
) -> Embeddings:
    """Every example's features under ``backbone``, computed once and cached on disk.

    The whole source is embedded in one pass (batches of ``batch_size``, the backbone in eval mode and
    its mode restored afterwards, no autograd); then any subset of examples is a read of the cached
    array. The key ([`EmbeddingKey`][EmbeddingKey]) is:

    * backbone: ``{"identity": identity, "weights": weights_digest(backbone)}`` (``identity`` defaults
      to the module's class name; ``hash_weights=False`` leaves the weights out, e.g. when ``identity``
      already names a weights file by its digest);
    * preprocessing: ``preprocessing`` (e.g. the backbone's ``preprocessing.to_dict()``: input size,
      mean, std, interpolation). The source's own transform must be what it describes: torchcross
      cannot see inside a function;
    * data: ``data``, default [`data_identity(source)`][data_identity].

    Args:
        source: a task source of ``(input, label)`` pairs (``get_batch`` is used when it has one).
        backbone: maps a batch of inputs to features ``(batch, width)``.
        cache: a folder (the file is named after the key's digest) or a ``.safetensors`` file;
            ``None``: compute in memory, cache nothing.
        identity, preprocessing, data: JSON-able parts of the key (see above).
        hash_weights: include the digest of the backbone's weights in the key.
        batch_size: examples per forward pass.
        device: where to run (default: the backbone's device); inputs are moved there.
        dtype: the input dtype for the forward pass (e.g. ``torch.bfloat16`` with a bf16 backbone on a
            GPU); features are stored as ``storage_dtype`` whatever it is.
        storage_dtype: ``torch.float32`` or ``torch.float16``.
        verify: check the checksum of a cached file before using it.

    Returns:
        [`Embeddings`][Embeddings], memory-mapped from the cache file when
        there is one.

    Raises:
        EmbeddingCacheError: the cache file exists but is damaged or was written for another key
            (never silently used nor overwritten).
        ValueError: an empty source, a backbone that does not return ``(batch, width)`` features.
        TypeError: key parts that are not JSON-able, a bad ``storage_dtype``.
    """
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
    batch_size = check_int(batch_size, "batch_size", 1)
    if storage_dtype not in _STORAGE:
        raise TypeError(f"storage_dtype must be torch.float32 or torch.float16, got {storage_dtype!r}")
    n = len(source)
    if n == 0:
        raise ValueError("the source is empty: there is nothing to embed")
    backbone_key: dict[str, Any] = {
        "identity": identity
        if identity is not None
        else f"{type(backbone).__module__}.{type(backbone).__qualname__}"
    }
    if hash_weights:
        backbone_key["weights"] = weights_digest(backbone)
    key = EmbeddingKey(
        backbone_key,
        {} if preprocessing is None else preprocessing,
        data_identity(source) if data is None else data,
    )
    path: Path | None = None
    if cache is not None:
        cache = Path(cache)
        path = cache if cache.suffix == SUFFIX else cache / f"embeddings-{key.digest[:32]}{SUFFIX}"
        if os.path.lexists(path):
            return load_embeddings(path, key, verify=verify)
    first = next(backbone.parameters(), None)
    run_on = torch.device(device) if device is not None else (first.device if first is not None else "cpu")
    modes = {m: m.training for m in backbone.modules()}
    backbone.eval()

    def compute() -> Iterator[torch.Tensor]:
        for x in _batches(source, batch_size):
            yield _forward(backbone, x, torch.device(run_on), dtype)

    with torch.no_grad():
        try:
            if path is None:
                feats = torch.cat([f.to("cpu", torch.float32) for f in compute()]).to(storage_dtype)
                return Embeddings(feats.numpy(), key, None)
            remove_stale_temp_files(path.parent, [path.name])
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "key": key.to_dict(),
                "digest": key.digest,
                "dtype": _STORAGE[storage_dtype],
                "torchcross": torchcross.__version__,
            }
            atomic_write(path, _Writer(compute(), n, manifest, _STORAGE[storage_dtype]))
        finally:
            for m, training in modes.items():
                m.train(training)
    return load_embeddings(path, key, verify=False)  # just written and checked by the rename
