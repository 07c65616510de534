"""A small real meta-dataset for the demo, built from scikit-learn's bundled handwritten digits.

scikit-learn ships the UCI optical digits (1,797 greyscale 8x8 images of the digits
0-9, written by 13 people) inside its wheel, so this needs no download. They are
upsampled to ``size x size`` (16 by default, bilinear) and split, stratified by digit, into four
disjoint groups of images. Each group becomes one MedIMeta-format dataset with its own
imaging domain:

===================  =====================  ==========================================
dataset id           domain                 imaging shift (applied after upsampling)
===================  =====================  ==========================================
``digits_scan_a``    Scanned ink            none (the original images)
``digits_scan_b``    Scanned ink            none (disjoint images, same domain as ``_a``)
``digits_negative``  Negative film          inverted intensities + Gaussian noise (sd 20)
``digits_defocus``   Defocused optics       Gaussian blur (sd 1.2 px) + contrast halved
===================  =====================  ==========================================

``digits_scan_a`` and ``digits_scan_b`` share a domain, so they are listed as each
other's ``domain_overlaps``: leave-one-out selection drops one when the other is the
target. The images of the four datasets are disjoint; which of the 13 writers wrote an
image is not published, so writer overlap between datasets cannot be ruled out.

Every dataset carries the same four tasks, one of each kind, derived from the digit
label and the image itself:

* ``digit`` (multi-class, 10 classes);
* ``even digit`` (binary);
* ``digit properties`` (multi-label: odd, prime, five or more, closed loop: 0 6 8 9);
* ``ink level`` (ordinal, 5 levels with MedIMeta-style gapped keys 1, 4, 6, 8, 10):
  the quintile of the total ink of the original 8x8 image over the whole collection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from torchcross._checks import check_int

__all__ = [
    "DEMO_DATASETS",
    "DemoDataset",
    "DemoTask",
    "SHIFTS",
    "apply_shift",
    "build_demo_arrays",
    "derive_tasks",
    "load_digit_images",
    "split_groups",
    "write_demo_medimeta",
]

_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PROPERTIES = ("odd", "prime", "five or more", "closed loop")
_PRIMES = frozenset({2, 3, 5, 7})
_LOOPS = frozenset({0, 6, 8, 9})
_INK_KEYS = (1, 4, 6, 8, 10)
_INK_NAMES = ("very light", "light", "medium", "heavy", "very heavy")


@dataclass(frozen=True)
class DemoDataset:
    """One dataset of the demo meta-dataset: its id, name, domain, imaging shift and overlaps."""

    id: str
    name: str
    domain: str
    shift: str
    summary: str
    domain_overlaps: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoTask:
    """One derived task: its name, kind (TaskTarget member name), classes and labels for all images."""

    name: str
    task_target: str
    classes: dict[int, str]
    labels: np.ndarray


DEMO_DATASETS: tuple[DemoDataset, ...] = (
    DemoDataset(
        "digits_scan_a",
        "Handwritten digits, scanned (group A)",
        "Scanned ink",
        "none",
        "UCI optical digits (bundled with scikit-learn), original images, first quarter.",
        ("digits_scan_b",),
    ),
    DemoDataset(
        "digits_scan_b",
        "Handwritten digits, scanned (group B)",
        "Scanned ink",
        "none",
        "UCI optical digits (bundled with scikit-learn), original images, second quarter.",
        ("digits_scan_a",),
    ),
    DemoDataset(
        "digits_negative",
        "Handwritten digits, negative film",
        "Negative film",
        "negative",
        "UCI optical digits, third quarter, intensities inverted with Gaussian noise (sd 20).",
    ),
    DemoDataset(
        "digits_defocus",
        "Handwritten digits, defocused",
        "Defocused optics",
        "defocus",
        "UCI optical digits, fourth quarter, Gaussian blur (sd 1.2 px) and contrast halved.",
    ),
)
"""The four datasets of the demo meta-dataset."""

SHIFTS: tuple[str, ...] = ("none", "negative", "defocus")


def load_digit_images(size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load scikit-learn's bundled digits, upsampled to ``size x size`` uint8 images.

    Returns:
        ``(images, digits, ink)``: images ``(1797, size, size)`` uint8 (0 = no ink),
        digit labels ``(1797,)`` int64 and total ink ``(1797,)`` float64 of the original
        8x8 images.

    Raises:
        ImportError: naming the ``torchcross[demo]`` extra if scikit-learn is missing.
        ValueError: if ``size`` is smaller than 8.

    Examples:
        >>> images, digits, ink = load_digit_images(16)
        >>> images.shape, images.dtype.name, digits[:5].tolist()
        ((1797, 16, 16), 'uint8', [0, 1, 2, 3, 4])
    """
    size = check_int(size, "size", 8, why=" (the digits are 8x8)")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the demo data comes from scikit-learn's bundled digits; "
            "install it with `pip install torchcross[demo]`"
        ) from exc
    bunch = load_digits()
    small = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), values 0..16
    digits = np.asarray(bunch.target, dtype=np.int64)
    ink = small.reshape(len(small), -1).sum(axis=1)
    x = torch.from_numpy(small / 16.0).unsqueeze(1)
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).squeeze(1)
    images = np.clip(np.rint(up.numpy() * 255.0), 0, 255).astype(np.uint8)
    return images, digits, ink


def _gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = torch.from_numpy(images.astype(np.float64)).unsqueeze(1)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.squeeze(1).numpy()


def apply_shift(images: np.ndarray, shift: str, rng: np.random.Generator) -> np.ndarray:
    """Apply a named imaging shift to uint8 images ``(N, H, W)``.

    ``"none"`` returns a copy; ``"negative"`` inverts intensities and adds Gaussian
    noise (sd 20 grey levels, from ``rng``); ``"defocus"`` blurs with a Gaussian
    (sd 1.2 px) and halves the contrast around mid-grey.

    Raises:
        ValueError: for an unknown shift (naming the known ones).

    Examples:
        >>> img = np.zeros((1, 8, 8), dtype=np.uint8)
        >>> int(apply_shift(img, "negative", np.random.default_rng(0)).mean()) > 200
        True
    """
    if shift == "none":
        return images.copy()
    x = images.astype(np.float64)
    if shift == "negative":
        x = 255.0 - x + rng.normal(0.0, 20.0, size=x.shape)
    elif shift == "defocus":
        x = 64.0 + 0.5 * _gaussian_blur(x, 1.2)
    else:
        raise ValueError(f"unknown imaging shift {shift!r}; known shifts: {', '.join(SHIFTS)}")
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def derive_tasks(digits: np.ndarray, ink: np.ndarray) -> list[DemoTask]:
    """The four demo tasks (one per kind) for digit labels and ink totals.

    Examples:
        >>> tasks = derive_tasks(np.array([0, 7, 8]), np.array([10.0, 20.0, 30.0]))
        >>> [(t.name, t.task_target) for t in tasks][:2]
        [('digit', 'MULTICLASS_CLASSIFICATION'), ('even digit', 'BINARY_CLASSIFICATION')]
        >>> tasks[2].labels.tolist()  # odd, prime, five or more, closed loop
        [[0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 1, 1]]
    """
    digits = np.asarray(digits, dtype=np.int64)
    props = np.stack(
        [
            digits % 2 == 1,
            np.isin(digits, sorted(_PRIMES)),
            digits >= 5,
            np.isin(digits, sorted(_LOOPS)),
        ],
        axis=1,
    ).astype(np.int64)
    edges = np.quantile(np.asarray(ink, dtype=np.float64), [0.2, 0.4, 0.6, 0.8])
    levels = np.searchsorted(edges, ink, side="right")
    return [
        DemoTask("digit", "MULTICLASS_CLASSIFICATION", dict(enumerate(_DIGIT_NAMES)), digits.copy()),
        DemoTask(
            "even digit", "BINARY_CLASSIFICATION", {0: "odd", 1: "even"}, (digits % 2 == 0).astype(np.int64)
        ),
        DemoTask("digit properties", "MULTILABEL_CLASSIFICATION", dict(enumerate(_PROPERTIES)), props),
        DemoTask(
            "ink level",
            "ORDINAL_REGRESSION",
            dict(zip(_INK_KEYS, _INK_NAMES)),
            np.asarray(_INK_KEYS, dtype=np.int64)[levels],
        ),
    ]


def split_groups(labels: np.ndarray, n_groups: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Split indices into ``n_groups`` disjoint groups, stratified by ``labels`` (sorted indices).

    Examples:
        >>> groups = split_groups(np.repeat(np.arange(3), 4), 2, np.random.default_rng(0))
        >>> [len(g) for g in groups], sorted(np.concatenate(groups).tolist()) == list(range(12))
        ([6, 6], True)
    """
    out: list[list[int]] = [[] for _ in range(n_groups)]
    offset = 0
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        for j, i in enumerate(idx):
            out[(j + offset) % n_groups].append(int(i))
        offset += len(idx)
    return [np.sort(np.asarray(g, dtype=np.int64)) for g in out]


def _split_names(labels: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """A split name per example, stratified by ``labels``."""
    names = np.empty(len(labels), dtype=object)
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for k, (name, frac) in enumerate(fractions.items()):
            stop = len(idx) if k == len(fractions) - 1 else start + round(frac * len(idx))
            names[idx[start:stop]] = name
            start = stop
    return names


def build_demo_arrays(size: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """Everything the demo datasets hold, as arrays (one dict per `DEMO_DATASETS` entry).

    Each dict has ``spec`` (`DemoDataset`), ``images`` ``(n, size, size)`` uint8,
    ``tasks`` (list of `DemoTask` restricted to the group), ``splits``
    (``{"train"|"val"|"test": sorted row indices}``, 45/10/45 % stratified by digit)
    and ``source_index`` (rows of the original collection).
    """
    rng = np.random.default_rng(seed)
    images, digits, ink = load_digit_images(size)
    tasks = derive_tasks(digits, ink)
    groups = split_groups(digits, len(DEMO_DATASETS), rng)
    out = []
    for spec, rows in zip(DEMO_DATASETS, groups):
        shifted = apply_shift(images[rows], spec.shift, rng)
        split = _split_names(digits[rows], {"train": 0.45, "val": 0.10, "test": 0.45}, rng)
        out.append(
            {
                "spec": spec,
                "images": shifted,
                "tasks": [DemoTask(t.name, t.task_target, t.classes, t.labels[rows]) for t in tasks],
                "splits": {s: np.flatnonzero(split == s) for s in ("train", "val", "test")},
                "source_index": rows,
            }
        )
    return out


def write_demo_medimeta(root: str | Path, size: int = 16, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the four demo datasets as MedIMeta folders under ``root`` and return ``root``.

    Uses [`torchcross.datasets.medimeta.write_medimeta()`][torchcross.datasets.medimeta.write_medimeta], so
    the result reads back
    with [`MedIMeta`][torchcross.datasets.medimeta.MedIMeta] like downloaded MedIMeta data.
    Existing demo folders written with the same ``size`` and ``seed`` are reused.

    Raises:
        FileExistsError: if a demo folder exists with other settings and ``overwrite`` is false.
        NotADirectoryError: if ``root`` exists and is not a folder.

    Examples:
        >>> import tempfile
        >>> from torchcross.datasets.medimeta import MedIMeta
        >>> root = write_demo_medimeta(tempfile.mkdtemp(), size=16)
        >>> src = MedIMeta(root, "digits_negative", "ink level", split="test")
        >>> src.task_description.class_keys, src[0][0].shape
        ((1, 4, 6, 8, 10), torch.Size([1, 16, 16]))
    """
    from torchcross.datasets.medimeta import read_info, write_medimeta
    from torchcross.tasks.task import TaskDescription

    root = Path(root)
    if os.path.lexists(root) and not root.is_dir():
        raise NotADirectoryError(
            f"demo data folder {str(root)!r} exists and is not a folder; choose a folder, or a path that "
            "does not exist yet (torchcross demo --data DIR)"
        )
    stamp = {"demo_size": size, "demo_seed": seed}
    existing = []
    for spec in DEMO_DATASETS:
        folder = root / spec.id
        if (folder / "info.yaml").is_file():
            raw = dict(read_info(folder).raw)
            existing.append(all(raw.get(k) == v for k, v in stamp.items()))
    if len(existing) == len(DEMO_DATASETS) and all(existing) and not overwrite:
        return root
    if existing and not all(existing) and not overwrite:
        raise FileExistsError(
            f"{root} holds demo datasets written with other settings (size, seed); "
            "pass overwrite=True or use another folder"
        )
    for arrays in build_demo_arrays(size, seed):
        spec = arrays["spec"]
        tasks = {
            t.name: (TaskDescription(t.task_target, t.classes, t.name, spec.domain), t.labels)
            for t in arrays["tasks"]
        }
        write_medimeta(
            root,
            spec.id,
            arrays["images"],
            tasks,
            {k: v for k, v in arrays["splits"].items()},
            name=spec.name,
            domain=spec.domain,
            summary=spec.summary,
            domain_overlaps=spec.domain_overlaps,
            annotations={"source_index": arrays["source_index"].tolist()},
            info={
                **stamp,
                "imaging_shift": spec.shift,
                "license": "CC BY 4.0 (UCI ML repository, optical recognition of handwritten digits)",
                "original_data": ["https://archive.ics.uci.edu/dataset/80"],
            },
            overwrite=True,
        )
    return root
