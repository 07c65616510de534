"""The decoded-image cache: the same pixels as decoding, keyed by what determines them, built atomically."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchcross.data.metadataset import sample_episode_set
from torchcross.datasets import image_cache
from torchcross.datasets.image_cache import CachedImageTaskSource, cache_images
from torchcross.datasets.image_files import ImageFilesTaskSource
from torchcross.datasets.meta_album import MetaAlbum, write_synthetic_meta_album
from torchcross.datasets.meta_dataset import MetaDatasetSource, write_synthetic_meta_dataset
from torchcross.tasks.task import TaskDescription

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("album")
    write_synthetic_meta_album(root, datasets=["BRD_Micro"], num_classes=5, images_per_class=6, image_size=12)
    return root / "BRD_Micro"


@pytest.fixture(scope="module")
def md_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("md")
    write_synthetic_meta_dataset(
        root, sources=["aircraft"], classes_per_split=(5, 0, 0), images_per_class=(6, 8)
    )
    return root / "aircraft"


def _same(a: CachedImageTaskSource | ImageFilesTaskSource, b: ImageFilesTaskSource) -> None:
    idx = list(range(len(b)))[::-1]
    xa, ya = a.get_batch(idx)
    xb, yb = b.get_batch(idx)
    assert xa.dtype == xb.dtype
    assert xa.shape == xb.shape
    assert xa.stride() == xb.stride()  # the same memory layout (uint8 RGB is channels-last)
    assert torch.equal(xa, xb)
    assert torch.equal(ya, yb)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("output", ["uint8", "float"])
def test_meta_album_pixels_are_identical_to_decoding(album: Path, tmp_path: Path, channels, output) -> None:
    src = MetaAlbum(album, image_size=(10, 9), channels=channels, output=output, mean=None, std=None)
    cached = src.cached(tmp_path / "c" / "album.tcimg")
    assert isinstance(cached, CachedImageTaskSource)
    assert len(cached) == len(src)
    assert cached.task_description == src.task_description
    assert np.array_equal(np.asarray(cached.labels), np.asarray(src.labels))
    assert cached.paths == src.paths  # other attributes pass through to the source
    _same(cached, src)
    assert np.array_equal(cached.image(3), src.image(3))
    x0, y0 = cached[2]
    assert torch.equal(x0, src[2][0])
    assert int(y0) == int(src[2][1])
    assert os.path.getsize(tmp_path / "c" / "album.tcimg") >= len(src) * 10 * 9 * channels
    reopened = src.cached(tmp_path / "c" / "album.tcimg")  # the stored file is used as it is
    _same(reopened, src)


def test_meta_dataset_records_are_cached(md_folder: Path, tmp_path: Path) -> None:
    src = MetaDatasetSource(md_folder, image_size=16, output="uint8")
    cached = src.cached(tmp_path / "md.tcimg")
    _same(cached, src)
    with pytest.raises(
        ValueError, match="image_size = \\[16, 16\\], but the source has image_size = \\[20, 20\\]"
    ):
        MetaDatasetSource(md_folder, image_size=20).cached(tmp_path / "md.tcimg")


def test_a_changed_file_makes_the_cache_stale(album: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "images").mkdir()
    for f in ("info.json", "labels.csv"):
        (folder / f).write_bytes((album / f).read_bytes())
    for f in os.listdir(album / "images"):
        (folder / "images" / f).write_bytes((album / "images" / f).read_bytes())
    src = MetaAlbum(folder, image_size=8, output="uint8")
    path = tmp_path / "c.tcimg"
    src.cached(path)
    victim = src.paths[4]
    Image.fromarray(np.full((12, 12, 3), 7, np.uint8)).save(victim)
    os.utime(victim, ns=(1, 1))  # a new size or time changes the fingerprint
    with pytest.raises(ValueError, match=r"1 of 30 differ, the first is image 4 \(.*\.png.*rebuild=True"):
        src.cached(path)
    fresh = src.cached(path, rebuild=True)
    _same(fresh, src)
    assert int(fresh.get_batch([4])[0].max()) == 7


def test_channels_and_other_sources_are_refused(album: Path, md_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.tcimg"
    MetaAlbum(album, image_size=8).cached(path)
    with pytest.raises(ValueError, match="channels = 3, but the source has channels = 1"):
        MetaAlbum(album, image_size=8, channels=1).cached(path)
    with pytest.raises(
        ValueError, match=r"reader = .*MetaAlbum.*, but the source has reader = .*MetaDatasetSource"
    ):
        MetaDatasetSource(md_folder, image_size=8).cached(path)
    other = ImageFilesTaskSource(
        MetaAlbum(album).paths[::-1],
        MetaAlbum(album).labels[::-1],
        MetaAlbum(album).task_description,
        image_size=8,
    )
    with pytest.raises(ValueError, match="reader = "):
        other.cached(path)


def test_the_key_covers_the_fingerprints(album: Path, tmp_path: Path) -> None:
    src = MetaAlbum(album, image_size=8)
    path = tmp_path / "c.tcimg"
    src.cached(path)
    # the same files in another order: same settings, other images at each position
    paths, labels = src.paths, np.asarray(src.labels)
    order = [1, 0, *range(2, len(paths))]
    swapped = MetaAlbum(album, image_size=8)
    swapped.paths = [paths[i] for i in order]
    with pytest.raises(ValueError, match="2 of 30 differ, the first is image 0"):
        swapped.cached(path)
    assert labels.shape[0] == 30


def test_a_file_that_is_not_a_cache_is_never_overwritten(album: Path, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(ValueError, match="is not a torchcross image cache"):
        MetaAlbum(album, image_size=8).cached(path, rebuild=True)
    assert path.read_text() == "mine"


class _Stop(BaseException):
    """Not an Exception: like KeyboardInterrupt, what a build must also clean up after."""


def test_a_failed_build_leaves_no_file(album: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = MetaAlbum(album, image_size=8, output="uint8")
    monkeypatch.setattr(image_cache, "_CHUNK_BYTES", 8 * 8 * 3 * 4)  # chunks of 4 images
    calls = []
    decode = src.images

    def failing(indices):
        calls.append(list(indices))
        if len(calls) == 3:
            raise _Stop("stopped mid-build")  # as if the process were interrupted
        return decode(indices)

    monkeypatch.setattr(src, "images", failing)
    with pytest.raises(_Stop, match="stopped mid-build"):
        src.cached(tmp_path / "c.tcimg")
    assert os.listdir(tmp_path) == []  # neither the cache nor its temporary file
    monkeypatch.setattr(src, "images", decode)
    _same(src.cached(tmp_path / "c.tcimg"), src)


def test_sizes_must_agree_without_image_size(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate([(6, 4), (6, 4), (5, 4)]):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size).save(paths[-1])
    desc = TaskDescription("BINARY_CLASSIFICATION", {0: "a", 1: "b"}, "toy")
    src = ImageFilesTaskSource(paths[:2], [0, 1], desc, output="uint8")
    _same(cache_images(src, tmp_path / "ok.tcimg"), src)
    mixed = ImageFilesTaskSource(paths, [0, 1, 0], desc)
    with pytest.raises(
        ValueError, match=r"image 2 of 'toy' is \(4, 5, 3\) but image 0 is \(4, 6, 3\).*image_size="
    ):
        mixed.cached(tmp_path / "mixed.tcimg")
    assert not (tmp_path / "mixed.tcimg").exists()
    with pytest.raises(TypeError, match="cannot cache a list"):
        cache_images([1, 2], tmp_path / "x.tcimg")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match=r"indices must be in 0\.\.1"):
        cache_images(src, tmp_path / "ok.tcimg").get_batch([2])


def test_episodes_and_a_dataloader_with_two_workers(album: Path, tmp_path: Path) -> None:
    src = MetaAlbum(album, image_size=8, output="uint8")
    cached = src.cached(tmp_path / "c.tcimg")
    a = sample_episode_set(src, 3, n_shot=2, n_query=2, n_way=5, seed=1)
    b = sample_episode_set(cached, 3, n_shot=2, n_query=2, n_way=5, seed=1)
    assert a.first_difference(b) is None
    for ta, tb in zip(a.as_dataset(src), b.as_dataset(cached)):
        assert torch.equal(ta.support[0], tb.support[0])
        assert torch.equal(ta.query[0], tb.query[0])
        assert torch.equal(ta.query[1], tb.query[1])
    loader = torch.utils.data.DataLoader(cached, batch_size=5, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    assert torch.equal(xs, src.get_batch(range(len(src)))[0])


def test_hugging_face_sources_are_cached(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    ds = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (5, 4), (i, 2 * i, 0)) for i in range(6)], "label": [0, 1] * 3},
        features=features,
    )
    from torchcross.datasets.hf_datasets import HFDatasetTaskSource

    src = HFDatasetTaskSource(ds, output="uint8", image_size=6)
    _same(src.cached(tmp_path / "hf.tcimg"), src)
    other = HFDatasetTaskSource(ds.select([1, 0, 2, 3, 4, 5]), output="uint8", image_size=6)
    with pytest.raises(ValueError, match="6 of 6 differ"):
        other.cached(tmp_path / "hf.tcimg")


def test_the_benchmark_runs_in_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder on the path
    spec = importlib.util.spec_from_file_location("image_cache_bench", ROOT / "benchmarks/image_cache.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--json", str(tmp_path / "report.json")])
    assert json.loads((tmp_path / "report.json").read_text())["sizes"] == [84]
    arms = {r["arm"] for r in report["rows"]}
    assert {"medimeta", "meta-album cached", "meta-dataset cached"} <= arms
