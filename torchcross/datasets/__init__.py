"""Adapters from external data to task sources: MedIMeta, MedMNIST and any labelled dataset.

Names are imported lazily on first use, so ``import torchcross.datasets`` needs none of
the optional packages (h5py, PyYAML, Pillow: ``pip install torchcross[medimeta]``).

Examples:
    >>> import torchcross.datasets as tds
    >>> len(tds.list_datasets()), len(tds.list_tasks())
    (19, 54)
"""

from __future__ import annotations

from torchcross._lazy import lazy_exports

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "MedIMeta": "medimeta.reader",
    "MedIMetaFileError": "medimeta._hdf5",
    "MedIMetaFolderWarning": "medimeta.folder",
    "available_datasets": "medimeta.folder",
    "available_tasks": "medimeta.folder",
    "medimeta_catalogue": "medimeta.catalogue",
    "list_datasets": "medimeta.catalogue",
    "list_tasks": "medimeta.catalogue",
    "leave_one_out_tasks": "medimeta.catalogue",
    "write_medimeta": "medimeta.writer",
    "write_synthetic_medimeta": "medimeta.writer",
    "validate_medimeta": "medimeta.validate",
    "ValidationReport": "medimeta.validate",
    "validate_all": "medimeta.validate",
    "normalize_batch": "_images",
    "images_to_tensor": "_images",
    "MedMNIST": "medmnist",
    "MEDMNIST_INFO": "medmnist",
    "ImageArrayTaskSource": "generic",
    "ImageFolderTaskSource": "generic",
    "read_image_folder": "generic",
    "medmnist_description": "medmnist",
    "medmnist_flag": "medmnist",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
