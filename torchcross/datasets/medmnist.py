"""MedMNIST's ``.npz`` files as task sources (one task per file), without the medmnist package.

A MedMNIST file (``pathmnist.npz``, ``chestmnist_64.npz``, ...) holds ``train_images``,
``train_labels``, ``val_images``, ``val_labels``, ``test_images`` and ``test_labels``;
images are uint8 ``(N, H, W)`` or ``(N, H, W, 3)``, labels ``(N, 1)`` (``(N, 14)`` for the
multi-label ChestMNIST). `MEDMNIST_INFO` gives the task kind, class names and
imaging domain of the twelve 2D datasets (from MedMNIST v2's ``INFO``); other files need
a ``task_description``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from torchcross.datasets._images import ChannelPolicy, Stats
from torchcross.datasets.generic import ImageArrayTaskSource
from torchcross.tasks.task import TaskDescription

__all__ = ["MEDMNIST_INFO", "MedMNIST", "medmnist_description", "medmnist_flag"]

_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

# flag -> (task kind, domain, class names in key order)
MEDMNIST_INFO: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pathmnist": (
        "MULTICLASS_CLASSIFICATION",
        "Histopathology",
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
    ),
    "chestmnist": (
        "MULTILABEL_CLASSIFICATION",
        "Chest X-ray",
        (
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
    ),
    "dermamnist": (
        "MULTICLASS_CLASSIFICATION",
        "Dermatoscopy",
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
    ),
    "octmnist": (
        "MULTICLASS_CLASSIFICATION",
        "OCT",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    ),
    "pneumoniamnist": ("BINARY_CLASSIFICATION", "Chest X-ray", ("normal", "pneumonia")),
    "retinamnist": ("ORDINAL_REGRESSION", "Retinal fundus", ("0", "1", "2", "3", "4")),
    "breastmnist": ("BINARY_CLASSIFICATION", "Breast ultrasound", ("malignant", "normal, benign")),
    "bloodmnist": (
        "MULTICLASS_CLASSIFICATION",
        "Microscopy",
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
    ),
    "tissuemnist": (
        "MULTICLASS_CLASSIFICATION",
        "Kidney cortex microscopy",
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
    ),
    "organamnist": ("MULTICLASS_CLASSIFICATION", "Abdominal CT", tuple(_ORGANS)),
    "organcmnist": ("MULTICLASS_CLASSIFICATION", "Abdominal CT", tuple(_ORGANS)),
    "organsmnist": ("MULTICLASS_CLASSIFICATION", "Abdominal CT", tuple(_ORGANS)),
}

_SPLITS = ("train", "val", "test")


def medmnist_description(flag: str) -> TaskDescription:
    """The [`TaskDescription`][TaskDescription] of a MedMNIST 2D flag (identifier
    ``"medmnist/<flag>"``).

    Raises:
        ValueError: for an unknown flag (listing the known ones).

    Examples:
        >>> d = medmnist_description("retinamnist")
        >>> d.task_target.name, d.num_classes, d.domain_identifier
        ('ORDINAL_REGRESSION', 5, 'Retinal fundus')
    """
    if flag not in MEDMNIST_INFO:
        raise ValueError(
            f"unknown MedMNIST flag {flag!r}; known: {sorted(MEDMNIST_INFO)}; "
            "for other files pass task_description="
        )
    kind, domain, names = MEDMNIST_INFO[flag]
    return TaskDescription(kind, dict(enumerate(names)), f"medmnist/{flag}", domain)


def medmnist_flag(path: str | os.PathLike[str]) -> str:
    """The MedMNIST flag a file name gives (lower case, without a ``_28``/``_64``/``_128``/``_224`` size).

    Examples:
        >>> medmnist_flag("data/PathMNIST_64.npz")
        'pathmnist'
    """
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0].lower()
    return re.sub(r"_(28|64|128|224)$", "", stem)


class MedMNIST(ImageArrayTaskSource):
    """One MedMNIST ``.npz`` file (one split or several) as a task source.

    The images of the chosen splits are read lazily, once per process (not pickled), so
    the object is cheap to send to ``spawn`` DataLoader workers.

    Args:
        path: the ``.npz`` file; its name gives the flag (``pathmnist_64.npz`` -> ``pathmnist``).
        split: ``"train"``, ``"val"``, ``"test"`` or a list of them (concatenated in that order).
        task_description: required for files that are not one of the twelve 2D flags.
        flag: override the flag read from the file name.
        channels, output, mean, std, transform: as in
            [`ImageArrayTaskSource`][ImageArrayTaskSource].

    Raises:
        ValueError: for an unknown flag without a description, an unknown split, a file
            without the split's arrays, or images and labels that disagree (naming the file).

    Examples:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "breastmnist.npz")
        >>> arrays = {f"{s}_images": np.zeros((4, 28, 28), np.uint8) for s in ("train", "val", "test")}
        >>> arrays.update(
        ...     {f"{s}_labels": np.array([[0], [1], [1], [0]], np.uint8) for s in ("train", "val", "test")}
        ... )
        >>> np.savez(path, **arrays)
        >>> src = MedMNIST(path, "train")
        >>> src.task_description.task_target.name, src[1][1].tolist(), src[0][0].shape
        ('BINARY_CLASSIFICATION', [1], torch.Size([1, 28, 28]))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str | Sequence[str] = "train",
        task_description: TaskDescription | None = None,
        flag: str | None = None,
        channels: ChannelPolicy = "keep",
        output: Literal["float", "uint8"] = "float",
        mean: Stats = None,
        std: Stats = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"MedMNIST file {self.path!r} does not exist")
        self.flag = flag or medmnist_flag(self.path)
        desc = task_description if task_description is not None else medmnist_description(self.flag)
        self.splits = [split] if isinstance(split, str) else list(split)
        bad = [s for s in self.splits if s not in _SPLITS]
        if bad or not self.splits:
            raise ValueError(f"split must be one of {_SPLITS} or a list of them, got {split!r}")
        with np.load(self.path, allow_pickle=False) as npz:
            missing = [f"{s}_{k}" for s in self.splits for k in ("images", "labels") if f"{s}_{k}" not in npz]
            if missing:
                raise ValueError(f"{self.path}: has no arrays {missing} (found {sorted(npz.files)})")
            labels = np.concatenate([npz[f"{s}_labels"] for s in self.splits])
        if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
            bad = labels[~np.isclose(labels, np.round(labels), rtol=0, atol=0) | ~np.isfinite(labels)]
            raise ValueError(
                f"{self.path}: labels must be whole class numbers, got float values such as "
                f"{np.unique(bad)[:5].tolist()}; fix the file (nothing is rounded or truncated)"
            )
        if labels.dtype.kind not in "biuf":
            raise ValueError(f"{self.path}: labels must be integers, got dtype {labels.dtype}")
        try:
            super().__init__(None, labels.astype(np.int64), desc, channels, output, mean, std, transform)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        self._images_pid: int | None = None

    @property
    def images(self) -> np.ndarray:
        """The uint8 images of the chosen splits (read on first use in each process)."""
        if self._images_pid != os.getpid():
            with np.load(self.path, allow_pickle=False) as npz:
                arr = np.concatenate([npz[f"{s}_images"] for s in self.splits])
            try:
                self._set_images(arr)
            except ValueError as exc:
                raise ValueError(f"{self.path}: {exc}") from None
            self._images_pid = os.getpid()
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_images", None)
        state["_images_pid"] = None
        return state
