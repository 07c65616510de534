"""MedIMeta: reader, catalogue, writer and validator for the MedIMeta on-disk format.

Examples:
    >>> from torchcross.datasets.medimeta import list_datasets
    >>> len(list_datasets())
    19
"""

from __future__ import annotations

from torchcross.datasets._images import normalize_batch
from torchcross.datasets.medimeta._hdf5 import HDF5Images, MedIMetaFileError
from torchcross.datasets.medimeta.catalogue import (
    catalogue_from_infos,
    leave_one_out_tasks,
    list_datasets,
    list_tasks,
    medimeta_catalogue,
)
from torchcross.datasets.medimeta.folder import (
    DatasetInfo,
    MedIMetaFolderWarning,
    TaskInfo,
    available_datasets,
    available_tasks,
    read_info,
    read_split,
    scan_datasets,
)
from torchcross.datasets.medimeta.reader import MedIMeta
from torchcross.datasets.medimeta.validate import Problem, ValidationReport, validate_all, validate_medimeta
from torchcross.datasets.medimeta.writer import write_medimeta, write_synthetic_medimeta

__all__ = [
    "DatasetInfo",
    "HDF5Images",
    "MedIMeta",
    "MedIMetaFileError",
    "MedIMetaFolderWarning",
    "Problem",
    "TaskInfo",
    "ValidationReport",
    "available_datasets",
    "available_tasks",
    "catalogue_from_infos",
    "leave_one_out_tasks",
    "list_datasets",
    "list_tasks",
    "medimeta_catalogue",
    "normalize_batch",
    "read_info",
    "read_split",
    "scan_datasets",
    "validate_all",
    "validate_medimeta",
    "write_medimeta",
    "write_synthetic_medimeta",
]
