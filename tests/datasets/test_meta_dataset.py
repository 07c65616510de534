"""Meta-Dataset's converted records (dataset_spec.json + TFRecord files), read without TensorFlow."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from torchcross.data.metadataset import VariableWayShotMetaDataset
from torchcross.datasets import meta_dataset as md
from torchcross.datasets._tfrecord import (
    _crc32c_numpy,
    _crc_loop,
    crc32c,
    encode_example,
    frame_record,
    masked_crc32c,
    parse_example,
    write_tfrecord,
)
from torchcross.datasets.formats import get_format
from torchcross.datasets.meta_dataset import (
    INDEX_FILE,
    MetaDatasetIndexWarning,
    MetaDatasetSource,
    open_meta_dataset,
    scan_meta_dataset,
    synthetic_color,
    write_synthetic_meta_dataset,
)


@pytest.fixture(scope="module")
def md_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three sources (plain, bi-level, hierarchical spec); tests must not modify it."""
    root = tmp_path_factory.mktemp("meta_dataset")
    write_synthetic_meta_dataset(root, seed=3)
    return root


def _one_source(tmp_path: Path, per_split: tuple[int, int, int] = (3, 0, 0)) -> Path:
    write_synthetic_meta_dataset(
        tmp_path, sources=("aircraft",), classes_per_split=per_split, images_per_class=(3, 3)
    )
    return tmp_path / "aircraft"


def _record_offsets(path: Path) -> list[int]:
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return offsets


# -- TFRecord framing, CRC-32C and the Example wire format ------------------------------------------------


def test_crc32c_known_vectors() -> None:
    # RFC 3720 B.4 and the common check value
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    c = crc32c(b"abc")
    assert masked_crc32c(b"abc") == (((c >> 15) | (c << 17)) + 0xA282EAD8) % 2**32


@pytest.mark.parametrize("n", [0, 1, 511, 512, 513, 4097, 70001])
def test_vectorised_crc_matches_the_byte_loop(n: int) -> None:
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert _crc32c_numpy(data) == _crc_loop(data, 0xFFFFFFFF) ^ 0xFFFFFFFF


def test_record_framing_and_example() -> None:
    payload = encode_example({"image": [b"\x89PNG..."], "label": [-5, 300]})
    rec = frame_record(payload)
    assert struct.unpack_from("<Q", rec)[0] == len(payload)
    assert struct.unpack_from("<I", rec, 8)[0] == masked_crc32c(rec[:8])
    assert rec[12:-4] == payload
    assert struct.unpack_from("<I", rec, len(rec) - 4)[0] == masked_crc32c(payload)
    parsed = parse_example(payload)
    (start, stop) = parsed["image"][1][0]
    assert payload[start:stop] == b"\x89PNG..."
    assert parsed["label"] == ("int64_list", [-5, 300])
    # an unpacked int64 list parses too
    feats = b"\x0a\x01x" + b"\x12\x06" + b"\x1a\x04\x08\x01\x08\x02"  # key "x", int64_list [1, 2]
    example = b"\x0a" + bytes([len(feats) + 2]) + b"\x0a" + bytes([len(feats)]) + feats
    assert parse_example(example) == {"x": ("int64_list", [1, 2])}
    with pytest.raises(ValueError, match="wire type 3"):
        parse_example(b"\x0b")
    with pytest.raises(ValueError, match="only field 1"):
        parse_example(b"\x12\x00")
    with pytest.raises(TypeError, match="list of bytes or a list of ints"):
        encode_example({"x": [1.5]})


# -- reading sources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["aircraft", "omniglot", "ilsvrc_2012"])
def test_classes_and_images_are_what_was_written(md_root: Path, source: str) -> None:
    spec = json.loads((md_root / source / "dataset_spec.json").read_text())
    src = MetaDatasetSource(md_root, source, image_size=8, output="uint8")
    names = [spec["class_names"][str(c)] for c in range(8)]
    assert src.task_description.task_identifier == f"{source}/class"
    assert src.task_description.task_target.name == "MULTICLASS_CLASSIFICATION"
    assert list(src.task_description.classes.values()) == names
    counts = np.bincount(np.asarray(src.labels), minlength=8)
    assert [len(md._index_records(str(md_root / source / f"{c}.tfrecords"), c)[0]) for c in range(8)] == (
        counts.tolist()
    )
    x, y = src.get_batch(np.arange(len(src)))
    assert x.shape == (len(src), 3, 8, 8)
    assert x.dtype == torch.uint8
    position = 0
    for c in range(8):
        for i in range(int(counts[c])):
            want = synthetic_color(c, i)
            want = (want[0],) * 3 if source == "omniglot" else want  # grey images, replicated
            assert x[position].flatten(1).unique(dim=1).T.tolist() == [list(want)]
            assert int(y[position]) == c
            position += 1
    grey = MetaDatasetSource(md_root / source, image_size=(5, 7), channels=1)
    assert grey.get_batch([0])[0].shape == (1, 1, 5, 7)


def test_class_splits(md_root: Path) -> None:
    whole = MetaDatasetSource(md_root, "aircraft", image_size=8)
    names = list(whole.task_description.classes.values())
    sizes = {}
    for split, classes in [("train", names[:4]), ("val", names[4:6]), ("test", names[6:])]:
        src = MetaDatasetSource(md_root, "aircraft", split, image_size=8)
        assert src.task_description.classes == dict(enumerate(classes))
        assert sorted(set(np.asarray(src.labels).tolist())) == list(range(len(classes)))
        sizes[split] = len(src)
    assert sum(sizes.values()) == len(whole)
    with pytest.raises(ValueError, match="split must be"):
        MetaDatasetSource(md_root, "aircraft", "valid", image_size=8)  # type: ignore[arg-type]


def test_scan_entries_and_format(md_root: Path, tmp_path: Path) -> None:
    entries, problems = scan_meta_dataset(md_root)
    assert problems == {}
    by_id = {e.id: e for e in entries}
    assert sorted(by_id) == ["aircraft", "ilsvrc_2012", "omniglot"]
    assert by_id["omniglot"].domain == "handwritten characters"
    assert by_id["ilsvrc_2012"].info["upstream"] == ("imagenet",)
    assert by_id["aircraft"].info["splits"] == ("train", "val", "test")
    assert by_id["aircraft"].info["input_size"] is None
    assert [t.task_name for t in by_id["aircraft"].tasks] == ["class"]
    assert len(by_id["aircraft"].tasks[0].classes) == 8
    # a test-only source, MS-COCO beside ImageNet (one domain), a broken spec
    write_synthetic_meta_dataset(tmp_path, sources=("mscoco", "ilsvrc_2012"), classes_per_split=(0, 2, 2))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset_spec.json").write_text('{"class_names": 3}')
    entries, problems = scan_meta_dataset(tmp_path)
    assert list(problems) == [str(tmp_path / "broken")]
    assert "not a Meta-Dataset DatasetSpecification" in problems[str(tmp_path / "broken")]
    by_id = {e.id: e for e in entries}
    assert by_id["mscoco"].info["splits"] == ("val", "test")
    assert by_id["mscoco"].domain_overlaps == {"ilsvrc_2012"}
    with pytest.raises(ValueError, match=r"0 classes in split 'train'.*\['val', 'test'\]"):
        MetaDatasetSource(tmp_path, "mscoco", "train", image_size=8)
    # one source folder as the root; the registered format
    assert [e.id for e in scan_meta_dataset(md_root / "omniglot")[0]] == ["omniglot"]
    fmt = get_format("meta-dataset")
    assert fmt.options == ("verify_crc",)
    src = fmt.open(md_root, "omniglot", "class", "test", channels=1, mean=0.5, std=0.5, image_size=12)
    assert src.get_batch([0, 1])[0].shape == (2, 1, 12, 12)
    with pytest.raises(ValueError, match="pass image_size"):
        fmt.open(md_root, "omniglot", "class", None, channels=3)
    with pytest.raises(ValueError, match="has one task, 'class'"):
        open_meta_dataset(md_root, "omniglot", "alphabet", image_size=8)
    with pytest.raises(ValueError, match=r"no Meta-Dataset source 'cu_birds'.*'aircraft'"):
        MetaDatasetSource(md_root, "cu_birds", image_size=8)
    root = fmt.synthetic(tmp_path / "syn", seed=1)  # type: ignore[misc]
    assert len(fmt.scan(root)[0]) == 3


def test_variable_way_episodes(md_root: Path) -> None:
    src = MetaDatasetSource(md_root, "ilsvrc_2012", "train", image_size=8)
    ds = VariableWayShotMetaDataset(src, min_ways=2, max_ways=4, max_query_per_class=2, length=6, seed=0)
    ways = set()
    for task in ds:
        n = task.description.num_classes
        ways.add(n)
        assert 2 <= n <= 4
        assert task.support[0].shape[1:] == (3, 8, 8)
        assert torch.bincount(task.query[1], minlength=n).unique().numel() == 1
    assert len(ways) > 1


# -- the index ---------------------------------------------------------------------------------------------


def test_index_built_once_reused_and_rebuilt_on_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _one_source(tmp_path)
    calls: list[str] = []
    real = md._index_records

    def spy(path: str, class_id: int):  # type: ignore[no-untyped-def]
        calls.append(os.path.basename(path))
        return real(path, class_id)

    monkeypatch.setattr(md, "_index_records", spy)
    first = MetaDatasetSource(folder, image_size=8)
    assert sorted(calls) == ["0.tfrecords", "1.tfrecords", "2.tfrecords"]
    assert (folder / INDEX_FILE).is_file()
    assert not [f for f in os.listdir(folder) if f.startswith(".torchcross_index")]  # no temp files left
    calls.clear()
    again = MetaDatasetSource(folder, "aircraft", image_size=8)
    assert calls == []
    assert torch.equal(first.get_batch([0, 4])[0], again.get_batch([0, 4])[0])
    write_tfrecord(
        folder / "1.tfrecords", [encode_example({"image": [first.record_bytes(0)], "label": [1]})] * 3
    )
    os.utime(folder / "1.tfrecords", ns=(1, 1))  # a different mtime, whatever the clock's resolution
    changed = MetaDatasetSource(folder, image_size=8)
    assert calls == ["1.tfrecords"]
    assert torch.equal(changed.get_batch([3])[0], first.get_batch([0])[0])
    calls.clear()
    (folder / INDEX_FILE).write_bytes(b"not a zip")  # an unreadable index is rebuilt, not an error
    MetaDatasetSource(folder, image_size=8)
    assert len(calls) == 3


def test_read_only_folder_keeps_the_index_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _one_source(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # as root, chmod would not stop the writes
    os.chmod(folder, 0o555)
    try:
        with pytest.warns(MetaDatasetIndexWarning, match="kept in memory"):
            src = MetaDatasetSource(folder, image_size=8)
        assert src.get_batch([0, 1, 2])[0].shape == (3, 3, 8, 8)
        calls: list[str] = []
        monkeypatch.setattr(md, "_index_records", lambda path, c: calls.append(path))
        assert len(MetaDatasetSource(folder, image_size=8)) == len(src)  # from memory, no second warning
        assert calls == []
        assert not (folder / INDEX_FILE).exists()
    finally:
        os.chmod(folder, 0o755)


# -- corrupt records: errors naming the file and the byte offset -----------------------------------------


def _corrupt(folder: Path, how: str) -> tuple[str, int]:
    path = folder / "1.tfrecords"
    data = bytearray(path.read_bytes())
    second = _record_offsets(path)[1]
    length = struct.unpack_from("<Q", data, second)[0]
    if how == "length crc":
        data[second + 8] ^= 0xFF
    elif how == "data crc":
        data[second + 12 + length - 1] ^= 0x01
    elif how == "truncated":
        data = data[: second + 7]
    elif how == "past the end":
        head = struct.pack("<Q", length + 1000)
        data[second : second + 12] = head + struct.pack("<I", masked_crc32c(head))
    elif how == "not an example":
        rec = frame_record(b"\x08\x01garbage")
        data = data[:second] + rec
    elif how == "extra feature":
        rec = frame_record(encode_example({"image": [b"x"], "label": [1], "extra": [2]}))
        data = data[:second] + rec
    elif how == "wrong label":
        rec = frame_record(encode_example({"image": [b"x"], "label": [2]}))
        data = data[:second] + rec
    path.write_bytes(bytes(data))
    return str(path), second


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("length crc", "bad length CRC in the record at byte offset {offset}"),
        ("data crc", "bad data CRC in the record at byte offset {offset}"),
        ("truncated", r"truncated record header at byte offset {offset}"),
        ("past the end", r"record at byte offset {offset} declares \d+ data bytes, past the end"),
        ("not an example", "record at byte offset {offset} is not a tf.train.Example"),
        ("extra feature", r"record at byte offset {offset} has features \['extra', 'image', 'label'\]"),
        ("wrong label", "record at byte offset {offset} has label 2, but the file holds class 1"),
    ],
)
def test_corrupt_record_is_an_error_naming_file_and_offset(tmp_path: Path, how: str, message: str) -> None:
    folder = _one_source(tmp_path)
    path, offset = _corrupt(folder, how)
    with pytest.raises(ValueError, match=r"1\.tfrecords.*" + message.format(offset=offset)):
        MetaDatasetSource(folder, image_size=8)
    assert path.endswith("1.tfrecords")
    assert not (folder / INDEX_FILE).exists()  # nothing half-written


def test_missing_class_file_and_count_mismatch(tmp_path: Path) -> None:
    folder = _one_source(tmp_path)
    os.remove(folder / "2.tfrecords")
    with pytest.raises(FileNotFoundError, match=r"2\.tfrecords' does not exist.*lists class 2"):
        MetaDatasetSource(folder, image_size=8)
    spec = json.loads((folder / "dataset_spec.json").read_text())
    spec["classes_per_split"]["TRAIN"] = 2
    spec["images_per_class"] = {"0": 3, "1": 5}
    spec["class_names"] = {"0": "a", "1": "b"}
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"class 1 has 3 records but dataset_spec\.json says 5"):
        MetaDatasetSource(folder, image_size=8)


def test_verify_crc_on_read(tmp_path: Path) -> None:
    folder = _one_source(tmp_path)
    src = MetaDatasetSource(folder, image_size=8)
    path = folder / "0.tfrecords"
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[int(src._image_offsets[1]) + 20] ^= 0xFF  # inside the image of record 1, same size
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the index still trusts the file
    checked = MetaDatasetSource(folder, image_size=8, verify_crc=True)
    offset = _record_offsets(path)[1]
    with pytest.raises(
        ValueError, match=rf"0\.tfrecords.*bad data CRC in the record at byte offset {offset}"
    ):
        checked.get_batch([1])
    assert checked.get_batch([0])[0].shape == (1, 3, 8, 8)


def test_sharded_file_pattern(tmp_path: Path) -> None:
    folder = _one_source(tmp_path)
    spec = json.loads((folder / "dataset_spec.json").read_text())
    spec["file_pattern"] = "{}_{}.tfrecords"
    (folder / "dataset_spec.json").write_text(json.dumps(spec))
    whole = (folder / "0.tfrecords").read_bytes()
    cut = _record_offsets(folder / "0.tfrecords")[1]
    (folder / "0_0.tfrecords").write_bytes(whole[:cut])
    (folder / "0_1.tfrecords").write_bytes(whole[cut:])
    os.rename(folder / "1.tfrecords", folder / "1_0.tfrecords")
    os.remove(folder / "0.tfrecords")
    with pytest.raises(FileNotFoundError, match=r"lists class 2 but there is no 2_\*\.tfrecords file"):
        MetaDatasetSource(folder, image_size=8)
    os.rename(folder / "2.tfrecords", folder / "2_0.tfrecords")
    src = MetaDatasetSource(folder, image_size=8, output="uint8")
    assert np.bincount(np.asarray(src.labels)).tolist() == [3, 3, 3]
    assert src.get_batch([1])[0][0, :, 0, 0].tolist() == list(synthetic_color(0, 1))


def test_google_crc32c_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchcross.datasets import _tfrecord

    class FakeGoogle:  # google_crc32c.value(bytes) -> int
        calls = 0

        @classmethod
        def value(cls, data: bytes) -> int:
            cls.calls += 1
            return _crc_loop(data, 0xFFFFFFFF) ^ 0xFFFFFFFF

    monkeypatch.setattr(_tfrecord, "_GOOGLE", FakeGoogle)
    assert crc32c(b"123456789") == 0xE3069283
    assert _tfrecord.crc32c_segments(b"0123456789", [0, 1], [9, 9]).tolist() == [
        crc32c(b"012345678"),
        crc32c(b"123456789"),
    ]
    assert FakeGoogle.calls == 5
