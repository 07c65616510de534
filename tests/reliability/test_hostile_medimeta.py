"""MedIMeta folders built to hurt: overwrite of foreign files, HDF5 that reads elsewhere, files cut while
open, YAML bombs, special files, decompression bombs, and the CLI's help and hints (issue 19)."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from reliability_helpers import no_hang

from torchcross.cli import main
from torchcross.datasets.medimeta import (
    MedIMeta,
    MedIMetaFileError,
    read_info,
    scan_datasets,
    validate_medimeta,
    write_synthetic_medimeta,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``toy`` (grey 4x4, 10 images, with TIFFs) under ``data``; ``secret.bin`` lies outside it."""
    data = tmp_path / "data"
    write_synthetic_medimeta(data, "toy", num_images=10, image_size=4, channels=1, write_tiffs=True)
    (tmp_path / "secret.bin").write_bytes(b"top secret bytes" * 10)  # 160 = 10 images of 4x4
    return data


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. overwrite deletes only files the writer makes, anywhere in the tree ---------------------------


@pytest.mark.parametrize(
    "foreign",
    ["images/photo1.jpg", "task_labels/notes.txt", "splits/extra.txt", "images/sub/000000.tiff", "LICENSE"],
)
def test_overwrite_refuses_a_foreign_file_anywhere_in_the_tree(root: Path, foreign: str) -> None:
    path = root / "toy" / foreign
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"mine")
    before = _tree(root / "toy")
    first = foreign.split("/sub/")[0] + "/sub" if "/sub/" in foreign else foreign
    with pytest.raises(FileExistsError, match=rf"holds \['{re.escape(first)}'\].*left the folder untouched"):
        write_synthetic_medimeta(root, "toy", num_images=12, image_size=4, channels=1, overwrite=True)
    assert _tree(root / "toy") == before
    assert [p.name for p in root.iterdir()] == ["toy"]  # no hidden leftovers


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_overwrite_refuses_links_and_special_files_named_like_its_own(
    root: Path, tmp_path: Path, kind: str
) -> None:
    path = root / "toy" / "images" / "000003.tiff"
    os.remove(path)
    if kind == "link":
        os.symlink(tmp_path / "secret.bin", path)
    else:
        os.mkfifo(path)
    with no_hang(20), pytest.raises(FileExistsError, match=r"holds \['images/000003\.tiff'\]"):
        write_synthetic_medimeta(root, "toy", num_images=10, image_size=4, channels=1, overwrite=True)
    assert os.path.lexists(path)
    assert (tmp_path / "secret.bin").read_bytes().startswith(b"top secret")


def test_overwrite_still_replaces_a_dataset_the_writer_made(root: Path) -> None:
    write_synthetic_medimeta(root, "toy", num_images=12, image_size=4, channels=1, overwrite=True)
    assert len(MedIMeta(root, "toy", "class")) == 12
    assert not (root / "toy" / "images").exists()  # the old TIFFs went with the old copy


def test_convert_overwrite_keeps_a_photo_it_did_not_write(tmp_path: Path) -> None:
    pets = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (pets / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(pets / cls / f"{i}.png")
    argv = ["medimeta", "convert", "folder", str(pets), "--out", str(tmp_path / "mm"), "--tiffs"]
    assert main(argv) == 0
    photo = tmp_path / "mm" / "pets" / "images" / "photo1.jpg"
    photo.write_bytes(b"holiday")
    assert main([*argv, "--overwrite"]) == 2
    assert photo.read_bytes() == b"holiday"


# -- 2. HDF5: nothing outside images.hdf5 is read; a file cut while open is an error, not SIGBUS ------


def _replace_hdf5(folder: Path, make: str, target: Path) -> None:
    path = folder / "images.hdf5"
    os.remove(path)
    with h5py.File(path, "w") as f:
        if make == "external storage":
            f.create_dataset("images", (10, 4, 4), np.uint8, external=[(str(target), 0, 160)])
        elif make == "virtual dataset":
            with h5py.File(target, "w") as g:
                g.create_dataset("images", data=np.zeros((10, 4, 4), np.uint8))
            layout = h5py.VirtualLayout((10, 4, 4), np.uint8)
            layout[:] = h5py.VirtualSource(str(target), "images", (10, 4, 4))
            f.create_virtual_dataset("images", layout)
        elif make == "external link":
            f["images"] = h5py.ExternalLink(str(target), "/images")
        else:  # soft link
            f.create_dataset("elsewhere", data=np.zeros((10, 4, 4), np.uint8))
            f["images"] = h5py.SoftLink("/elsewhere")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        ("external storage", r"dataset 'images' is stored in external files \[.*secret\.bin'\]"),
        ("virtual dataset", r"dataset 'images' is a virtual dataset"),
        ("external link", r"'images' is an external link \('/images' in '.*other\.h5'\)"),
        ("soft link", r"'images' is a soft link \('/elsewhere'\)"),
    ],
)
def test_hdf5_data_stored_elsewhere_is_refused_by_reader_and_verify(
    root: Path, tmp_path: Path, make: str, match: str
) -> None:
    target = tmp_path / ("secret.bin" if make == "external storage" else "other.h5")
    _replace_hdf5(root / "toy", make, target)
    with pytest.raises(MedIMetaFileError, match=rf"toy/images\.hdf5: {match}.*re-create the file"):
        MedIMeta(root, "toy", "class")
    report = validate_medimeta(root / "toy")
    assert not report.ok
    assert re.search(match, "\n".join(report.by_file()[str(root / "toy" / "images.hdf5")]))


@pytest.mark.parametrize("make", ["external storage", "external link"])
def test_hdf5_pointing_at_a_fifo_does_not_hang(root: Path, tmp_path: Path, make: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _replace_hdf5(root / "toy", make, fifo)
    with no_hang(20), pytest.raises(MedIMetaFileError, match=r"images\.hdf5: .*not .*this file"):
        MedIMeta(root, "toy", "class")
    with no_hang(20):
        assert not validate_medimeta(root / "toy").ok


_TRUNCATE_WHILE_OPEN = """
import os, sys
from torchcross.datasets.medimeta import MedIMeta, MedIMetaFileError, write_synthetic_medimeta
root = sys.argv[1]
write_synthetic_medimeta(root, "big", num_images=64, image_size=128, channels=3)
src = MedIMeta(root, "big", "class", output="uint8")
src.get_batch(list(range(64)))  # the file is open (and was memory-mapped before the fix)
os.truncate(os.path.join(root, "big", "images.hdf5"), 8192)  # cut in place while open
try:
    src.get_batch([63, 0, 40])
except MedIMetaFileError as exc:
    print("ERROR", exc)
"""


def test_hdf5_truncated_while_open_is_an_error_not_sigbus(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_WHILE_OPEN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, f"exit {proc.returncode} (-7 is SIGBUS): {proc.stderr[-2000:]}"
    assert re.search(r"ERROR .*big/images\.hdf5: file was truncated while open \(8192 bytes now", proc.stdout)


def test_positioned_reads_match_the_stored_rows(root: Path) -> None:
    src = MedIMeta(root, "toy", "class", output="uint8")
    with h5py.File(root / "toy" / "images.hdf5") as f:
        stored = f["images"][()]
    for idx in ([3], [9, 0, 4], [2, 3, 4, 5], [5, 5, 1], list(range(10))[::-1], []):
        rows = src.split_indices[np.asarray(idx, dtype=np.int64)]
        assert np.array_equal(src.get_batch(idx)[0].numpy()[:, 0], stored[rows])


# -- 3. info.yaml: aliases that expand to gigabytes are refused while parsing --------------------------


_BOMB = "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}" if i else '"lol"'] * 9) + "]\n"
    for i in range(10)
)


@contextlib.contextmanager
def _memory_cap(extra: int = 2 << 30) -> Iterator[None]:
    """Cap this process's address space at its size now plus ``extra`` (a regression then fails with
    MemoryError instead of filling the machine); Linux only, a no-op elsewhere."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        yield
        return
    vm_size = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_size + extra if hard == resource.RLIM_INFINITY else min(hard, vm_size + extra)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_info_yaml_alias_bomb_is_refused_naming_the_file(root: Path) -> None:
    info = root / "toy" / "info.yaml"
    bomb = _BOMB + "id: toy\ninput_size: *j\n"
    assert len(bomb) < 1500  # 1.3 KB, 9**10 strings when expanded
    info.write_text(bomb)
    expected = r"toy/info\.yaml: line \d+: with its YAML aliases .* holds more than 10,000,000 characters"
    with _memory_cap(), pytest.raises(MedIMetaFileError, match=expected):
        read_info(root / "toy")
    with _memory_cap():
        infos, problems = scan_datasets(root)
        assert not infos
        assert re.search(expected, problems["toy"])
        assert not validate_medimeta(root / "toy").ok


def test_convert_description_alias_bomb_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bomb = tmp_path / "grade.yaml"
    levels = [line.split(": ", 1)[1] for line in _BOMB.splitlines()]  # "&a [...]", "&b [*a, ...]", ...
    bomb.write_text("kind: multiclass\nclasses: [" + ", ".join(levels) + "]\n")  # allowed keys only
    np.savez(tmp_path / "myscans.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    argv = ["medimeta", "convert", "medmnist", str(tmp_path / "myscans.npz"), "--out", str(tmp_path / "mm")]
    with _memory_cap():
        assert main([*argv, "--description", str(bomb)]) == 2
    assert re.search(
        r"grade\.yaml: line \d+: with its YAML aliases .* holds more than", capsys.readouterr().err
    )


def test_info_yaml_with_harmless_aliases_still_loads(root: Path) -> None:
    info = root / "toy" / "info.yaml"
    text = info.read_text()
    block = re.search(r"splits_num_samples:\n((?:  .*\n)+)", text).group(1)
    text = text.replace(f"\nsplits_num_samples:\n{block}", f"\nsplits_num_samples: &counts\n{block}")
    text = text.replace(f"original_splits_num_samples:\n{block}", "original_splits_num_samples: *counts\n")
    info.write_text(text)
    assert "*counts" in info.read_text()
    assert read_info(root / "toy").original_splits_num_samples == read_info(root / "toy").splits_num_samples
    assert validate_medimeta(root / "toy").ok


# -- 4. special files are named as such; decompression bombs name the file; CLI texts ----------------


def _make_special(path: Path, kind: str) -> None:
    os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)


def _open_and_read(root: Path, kwargs: dict, read: str | None) -> None:
    src = MedIMeta(root, "toy", "class", **kwargs)
    if read:
        src.get_batch(list(range(len(src))))


@pytest.mark.parametrize(("kind", "what"), [("fifo", "a FIFO"), ("dev-zero", "a character device")])
@pytest.mark.parametrize(
    ("rel", "kwargs", "read"),
    [
        ("task_labels/class.npy", {}, None),
        ("images.hdf5", {}, None),
        ("images/000000.tiff", {"use_hdf5": False}, None),
        ("images/000007.tiff", {"use_hdf5": False}, "all"),
    ],
)
def test_special_files_are_named_not_called_missing(
    root: Path, kind: str, what: str, rel: str, kwargs: dict, read: str | None
) -> None:
    _make_special(root / "toy" / rel, kind)
    match = rf"toy/{re.escape(rel)}: is {what}, not a regular file"
    with no_hang(20), pytest.raises(MedIMetaFileError, match=match):
        _open_and_read(root, kwargs, read)
    if not rel.startswith("images/"):
        with no_hang(20):
            report = validate_medimeta(root / "toy")
        assert any(f"is {what}, not a regular file" in m for m in report.by_file()[str(root / "toy" / rel)])


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_tiff_decompression_bomb_names_the_file_and_the_fix(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = root / "toy" / "images" / "000005.tiff"
    Image.new("L", (100, 100)).save(bomb, compression="tiff_deflate")  # 10,000 pixels: > 2x the limit
    src = MedIMeta(root, "toy", "class", use_hdf5=False)
    row = int(np.flatnonzero(src.split_indices == 5)[0])
    with pytest.raises(
        MedIMetaFileError,
        match=r"toy/images/000005\.tiff: refused to decode a possible decompression bomb .*"
        r"means \(4, 4\): re-convert the dataset or read images\.hdf5 .*PIL\.Image\.MAX_IMAGE_PIXELS",
    ):
        src.get_batch([row])


def test_tiff_of_the_wrong_size_is_refused_before_decoding(root: Path) -> None:
    Image.new("L", (40, 30)).save(root / "toy" / "images" / "000002.tiff")
    src = MedIMeta(root, "toy", "class", use_hdf5=False)
    with pytest.raises(MedIMetaFileError, match=r"000002\.tiff: image is \(30, 40\), but .* means \(4, 4\)"):
        src.get_batch([int(np.flatnonzero(src.split_indices == 2)[0])])


def test_convert_help_states_the_split_the_code_draws(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match=r"^0$"):
        main(["medimeta", "convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "70/10/20 train/val/test split" in text
    assert "80/10/20" not in text
    pets = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (pets / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(pets / cls / f"{i}.png")
    assert main(["medimeta", "convert", "folder", str(pets), "--out", str(tmp_path / "mm")]) == 0
    counts = read_info(tmp_path / "mm" / "pets").splits_num_samples
    assert dict(counts) == {"train": 14, "val": 2, "test": 4}


def test_info_of_a_converted_dataset_suggests_data_path(
    capsys: pytest.CaptureFixture[str], root: Path
) -> None:
    assert main(["medimeta", "info", "toy"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'toy'" in err
    assert "torchcross medimeta info toy --data-path DIR" in err
    assert main(["medimeta", "info", "toy", "--data-path", str(root)]) == 0
    assert "toy: Synthetic toy" in capsys.readouterr().out
    assert main(["medimeta", "info", "nope", "--data-path", str(root)]) == 2
    assert f"known datasets: toy (the datasets under {root})" in capsys.readouterr().err


def test_a_protocol_config_yaml_alias_bomb_is_refused_naming_the_file(tmp_path: Path) -> None:
    from torchcross.protocol.config import load_config

    levels = [line.split(": ", 1)[1] for line in _BOMB.splitlines()]
    bomb = tmp_path / "experiment.yaml"
    bomb.write_text("data:\n  root: d\n  targets: [" + ", ".join(levels) + "]\nrun:\n  out_dir: o\n")
    with _memory_cap(), pytest.raises(ValueError, match=r"experiment\.yaml: line \d+: with its YAML aliases"):
        load_config(bomb)
    harmless = tmp_path / "ok.yaml"
    harmless.write_text("data:\n  root: &r d\n  targets: [t]\nrun:\n  out_dir: *r\n")
    assert str(load_config(harmless).run.out_dir).endswith("d")
