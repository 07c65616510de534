"""Adapters from external data to task sources: MedIMeta, MedMNIST and any labelled dataset.

Names are imported lazily on first use, so ``import torchcross.datasets`` needs none of
the optional packages (h5py, PyYAML, Pillow: ``pip install torchcross[medimeta]``).

Examples:
    >>> import torchcross.datasets as tds
    >>> len(tds.list_datasets()), len(tds.list_tasks())
    (19, 54)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchcross._lazy import lazy_exports

if TYPE_CHECKING:
    from torchcross.datasets._images import images_to_tensor as images_to_tensor
    from torchcross.datasets._images import normalize_batch as normalize_batch
    from torchcross.datasets.bscd_fsl import BSCD_FSL_DATASETS as BSCD_FSL_DATASETS
    from torchcross.datasets.bscd_fsl import BSCD_FSL_PROTOCOL as BSCD_FSL_PROTOCOL
    from torchcross.datasets.bscd_fsl import BSCDFSL as BSCDFSL
    from torchcross.datasets.bscd_fsl import bscd_fsl_episodes as bscd_fsl_episodes
    from torchcross.datasets.bscd_fsl import open_bscd_fsl as open_bscd_fsl
    from torchcross.datasets.bscd_fsl import scan_bscd_fsl as scan_bscd_fsl
    from torchcross.datasets.bscd_fsl import write_synthetic_bscd_fsl as write_synthetic_bscd_fsl
    from torchcross.datasets.generic import ImageArrayTaskSource as ImageArrayTaskSource
    from torchcross.datasets.generic import ImageFolderTaskSource as ImageFolderTaskSource
    from torchcross.datasets.generic import read_image_folder as read_image_folder
    from torchcross.datasets.hf_datasets import HFDatasetTaskSource as HFDatasetTaskSource
    from torchcross.datasets.hf_datasets import open_hf as open_hf
    from torchcross.datasets.hf_datasets import scan_hf as scan_hf
    from torchcross.datasets.hf_datasets import write_synthetic_hf as write_synthetic_hf
    from torchcross.datasets.image_files import ImageFilesTaskSource as ImageFilesTaskSource
    from torchcross.datasets.image_files import hash_splits as hash_splits
    from torchcross.datasets.medimeta._hdf5 import MedIMetaFileError as MedIMetaFileError
    from torchcross.datasets.medimeta.catalogue import leave_one_out_tasks as leave_one_out_tasks
    from torchcross.datasets.medimeta.catalogue import list_datasets as list_datasets
    from torchcross.datasets.medimeta.catalogue import list_tasks as list_tasks
    from torchcross.datasets.medimeta.catalogue import medimeta_catalogue as medimeta_catalogue
    from torchcross.datasets.medimeta.folder import MedIMetaFolderWarning as MedIMetaFolderWarning
    from torchcross.datasets.medimeta.folder import available_datasets as available_datasets
    from torchcross.datasets.medimeta.folder import available_tasks as available_tasks
    from torchcross.datasets.medimeta.reader import MedIMeta as MedIMeta
    from torchcross.datasets.medimeta.validate import ValidationReport as ValidationReport
    from torchcross.datasets.medimeta.validate import validate_all as validate_all
    from torchcross.datasets.medimeta.validate import validate_medimeta as validate_medimeta
    from torchcross.datasets.medimeta.writer import write_medimeta as write_medimeta
    from torchcross.datasets.medimeta.writer import write_synthetic_medimeta as write_synthetic_medimeta
    from torchcross.datasets.medmnist import MEDMNIST_INFO as MEDMNIST_INFO
    from torchcross.datasets.medmnist import MedMNIST as MedMNIST
    from torchcross.datasets.medmnist import medmnist_description as medmnist_description
    from torchcross.datasets.medmnist import medmnist_flag as medmnist_flag
    from torchcross.datasets.meta_album import META_ALBUM_DATASETS as META_ALBUM_DATASETS
    from torchcross.datasets.meta_album import META_ALBUM_DOMAINS as META_ALBUM_DOMAINS
    from torchcross.datasets.meta_album import MetaAlbum as MetaAlbum
    from torchcross.datasets.meta_album import MetaAlbumDataset as MetaAlbumDataset
    from torchcross.datasets.meta_album import list_meta_album as list_meta_album
    from torchcross.datasets.meta_album import open_meta_album as open_meta_album
    from torchcross.datasets.meta_album import scan_meta_album as scan_meta_album
    from torchcross.datasets.meta_album import write_synthetic_meta_album as write_synthetic_meta_album
    from torchcross.datasets.meta_dataset import META_DATASET_SOURCES as META_DATASET_SOURCES
    from torchcross.datasets.meta_dataset import MetaDatasetIndexWarning as MetaDatasetIndexWarning
    from torchcross.datasets.meta_dataset import MetaDatasetSource as MetaDatasetSource
    from torchcross.datasets.meta_dataset import open_meta_dataset as open_meta_dataset
    from torchcross.datasets.meta_dataset import scan_meta_dataset as scan_meta_dataset
    from torchcross.datasets.meta_dataset import write_synthetic_meta_dataset as write_synthetic_meta_dataset

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
    "ImageFilesTaskSource": "image_files",
    "hash_splits": "image_files",
    "MetaAlbum": "meta_album",
    "MetaAlbumDataset": "meta_album",
    "META_ALBUM_DATASETS": "meta_album",
    "META_ALBUM_DOMAINS": "meta_album",
    "list_meta_album": "meta_album",
    "scan_meta_album": "meta_album",
    "open_meta_album": "meta_album",
    "write_synthetic_meta_album": "meta_album",
    "HFDatasetTaskSource": "hf_datasets",
    "scan_hf": "hf_datasets",
    "open_hf": "hf_datasets",
    "write_synthetic_hf": "hf_datasets",
    "META_DATASET_SOURCES": "meta_dataset",
    "MetaDatasetIndexWarning": "meta_dataset",
    "MetaDatasetSource": "meta_dataset",
    "open_meta_dataset": "meta_dataset",
    "scan_meta_dataset": "meta_dataset",
    "write_synthetic_meta_dataset": "meta_dataset",
    "images_to_tensor": "_images",
    "MedMNIST": "medmnist",
    "MEDMNIST_INFO": "medmnist",
    "ImageArrayTaskSource": "generic",
    "ImageFolderTaskSource": "generic",
    "read_image_folder": "generic",
    "medmnist_description": "medmnist",
    "medmnist_flag": "medmnist",
    "BSCDFSL": "bscd_fsl",
    "BSCD_FSL_DATASETS": "bscd_fsl",
    "BSCD_FSL_PROTOCOL": "bscd_fsl",
    "bscd_fsl_episodes": "bscd_fsl",
    "open_bscd_fsl": "bscd_fsl",
    "scan_bscd_fsl": "bscd_fsl",
    "write_synthetic_bscd_fsl": "bscd_fsl",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
