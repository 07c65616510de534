"""The format registry: registering, looking up, and lazy readers that show their real signature."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from torchcross.datasets.formats import FORMATS, get_format, lazy, register_format
from torchcross.datasets.image_files import ImageFilesTaskSource
from torchcross.tasks.task import TaskDescription


def test_a_name_is_registered_once_unless_replaced() -> None:
    medimeta = FORMATS["medimeta"]
    with pytest.raises(
        ValueError, match=r"a format named 'medimeta' is already registered; pass replace=True"
    ):
        register_format(dataclasses.replace(medimeta, description="another"))
    assert FORMATS["medimeta"] is medimeta
    with pytest.raises(TypeError, match=r"register_format\(\) takes a DataFormat, got dict"):
        register_format({"name": "dict-format"})  # type: ignore[arg-type]
    other = register_format(dataclasses.replace(medimeta, name="medimeta-copy"))
    try:
        assert get_format("medimeta-copy") is other
        assert (
            register_format(dataclasses.replace(other, description="new"), replace=True).description == "new"
        )
    finally:
        FORMATS.pop("medimeta-copy")


def test_an_unknown_name_lists_the_known_ones_and_the_closest() -> None:
    with pytest.raises(
        ValueError, match=r"unknown data format 'meta-albm'; known: .*meta-album.*did you mean 'meta-album'"
    ):
        get_format("meta-albm")


def test_registered_readers_are_lazy_and_show_the_reader_s_signature() -> None:
    writer = FORMATS["meta-dataset"].synthetic
    assert writer is not None
    assert repr(writer) == "lazy('torchcross.datasets.meta_dataset', 'write_synthetic_meta_dataset')"
    assert {"seed", "sources", "images_per_class"} <= set(inspect.signature(writer).parameters)
    assert lazy("os.path", "join")("a", "b") == "a/b"


def test_an_image_source_has_one_or_three_channels(tmp_path) -> None:
    desc = TaskDescription("BINARY_CLASSIFICATION", {0: "a", 1: "b"})
    with pytest.raises(ValueError, match=r"channels must be 1 or 3, got 2"):
        ImageFilesTaskSource([str(tmp_path / "a.png")], [0], desc, channels=2)  # type: ignore[arg-type]
