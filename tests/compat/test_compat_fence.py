"""The compat fence: torchcross 0.0.6's code lives in torchcross.compat, its import paths are aliases.

Every module under the 0.0.6 packages (``torchcross.models``, ``torchcross.cd``, ``torchcross.utils``)
and the 0.0.6 re-export modules of ``torchcross.data`` serve the very objects of their
``torchcross.compat`` twin; pickles that name an old path load; and importing the core never imports
``torchcross.compat``.
"""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import subprocess
import sys

import pytest
import torch

import torchcross

ALIAS_PACKAGES = ("torchcross.models", "torchcross.cd", "torchcross.utils")
ALIAS_MODULES = (
    "torchcross.data.task",
    "torchcross.data.task_source",
    "torchcross.data.dataset",
    "torchcross.data.metadataset.few_shot",
    "torchcross.data.metadataset.few_shot_dummies",
)


def _aliases() -> list[str]:
    names = list(ALIAS_MODULES)
    for package in ALIAS_PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return sorted(names)


ALIASES = _aliases()


def test_every_0_0_6_module_is_found() -> None:
    assert len(ALIASES) == 32
    assert {
        "torchcross.models.lightning.maml",
        "torchcross.cd.metrics.wrappers",
        "torchcross.utils.layers",
    } <= set(ALIASES)


@pytest.mark.parametrize("old", ALIASES)
def test_old_path_serves_the_objects_of_its_compat_twin(old: str) -> None:
    alias = importlib.import_module(old)
    twin = importlib.import_module(old.replace("torchcross.", "torchcross.compat.", 1))
    assert alias.__all__ == twin.__all__
    for name in twin.__all__:
        value = getattr(alias, name)
        if isinstance(value, type(torchcross)):  # a submodule: the alias of the twin's submodule
            assert value.__name__ in (f"{old}.{name}", f"{twin.__name__}.{name}")
            continue
        assert value is getattr(twin, name), f"{old}.{name} is not {twin.__name__}.{name}"


def test_classes_live_in_compat() -> None:
    from torchcross.models.lightning import MAML
    from torchcross.utils.layers import Expand

    assert MAML.__module__ == "torchcross.compat.models.lightning.maml"
    assert Expand.__module__ == "torchcross.compat.models.expand"


@pytest.mark.parametrize("old", ["torchcross.models.expand", "torchcross.utils.layers"])
def test_pickles_naming_an_old_path_load(old: str) -> None:
    from torchcross.compat.models.expand import Expand

    module = importlib.import_module(old)
    layer = module.Expand(-1, 3, -1, -1)
    data = pickle.dumps(layer, protocol=2).replace(b"torchcross.compat.models.expand", old.encode())
    assert old.encode() in data
    back = pickle.loads(data)
    assert type(back) is Expand
    assert back(torch.zeros(1, 1, 2, 2)).shape == (1, 3, 2, 2)


def test_pickled_0_0_6_task_class_path_resolves() -> None:
    from torchcross.tasks.task import Task

    data = b"\x80\x02ctorchcross.data.task\nTask\nq\x00."
    assert pickle.loads(data) is Task


def test_importing_the_core_never_imports_compat() -> None:
    core = [
        "torchcross.data",
        "torchcross.data.metadataset",
        "torchcross.datasets.medimeta",
        "torchcross.learners",
        "torchcross.evaluation",
        "torchcross.lightning.modules",
        "torchcross.protocol.run",
        "torchcross.cli.app",
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('torchcross.compat')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_thread_policy_has_a_core_home() -> None:
    import torchcross.threads
    import torchcross.utils

    for name in torchcross.threads.__all__:
        assert getattr(torchcross.utils, name) is getattr(torchcross.threads, name), name
