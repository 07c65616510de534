"""Every public name imports from every path it is documented at.

Package namespaces, the module that defines each name (its home), and the torchcross 0.0.6
import paths that code written for the original library uses.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import torchcross

NAMESPACES = [
    "torchcross",
    "torchcross.tasks",
    "torchcross.sampling",
    "torchcross.data",
    "torchcross.data.metadataset",
    "torchcross.datasets",
    "torchcross.datasets.medimeta",
    "torchcross.backbones",
    "torchcross.nn",
    "torchcross.learners",
    "torchcross.evaluation",
    "torchcross.protocol",
    "torchcross.cli",
    "torchcross.utils",
    "torchcross.cd",
    "torchcross.cd.metrics",
    "torchcross.models",
    "torchcross.models.lightning",
]

# torchcross 0.0.6 import paths (module -> names) that clients such as the medimeta package use
PATHS_0_0_6 = {
    "torchcross.data": [
        "TaskSource",
        "TaskDescription",
        "TaskTarget",
        "RandomInterleaveDataset",
        "BatchedTaskSource",
        "Task",
    ],
    "torchcross.data.task": ["Task", "TaskDescription", "TaskTarget"],
    "torchcross.data.task_source": [
        "TaskSource",
        "WrapTaskSource",
        "SubsetTaskSource",
        "ConcatTaskSource",
        "BatchedTaskSource",
    ],
    "torchcross.data.metadataset": ["MetaDataset", "FewShotMetaDataset", "SubTaskRandomFewShotMetaDataset"],
    "torchcross.utils.collate_fn": ["identity", "stack"],
}


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(torchcross.__path__, "torchcross."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_namespace_exports_resolve(namespace: str) -> None:
    module = importlib.import_module(namespace)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{namespace}.__all__ names that do not import: {missing}"
    assert sorted(module.__all__) == sorted(set(module.__all__)), f"{namespace}.__all__ has duplicates"


@pytest.mark.parametrize("module_name", _all_modules())
def test_module_homes_export_what_they_list(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names that do not import: {missing}"


@pytest.mark.parametrize("module_name", sorted(PATHS_0_0_6))
def test_0_0_6_paths_import(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in PATHS_0_0_6[module_name]:
        assert hasattr(module, name), f"from {module_name} import {name} fails"


def test_namespace_names_are_the_objects_of_their_homes() -> None:
    """A name re-exported by a namespace is the very object its defining module holds."""
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        for name in module.__all__:
            value = getattr(module, name)
            home = getattr(value, "__module__", None)
            if not isinstance(home, str) or not home.startswith("torchcross") or home == namespace:
                continue
            home_module = importlib.import_module(home)
            if hasattr(home_module, name):
                assert getattr(home_module, name) is value, f"{namespace}.{name} differs from {home}.{name}"
