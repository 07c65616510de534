"""The embedding cache: computed once, read memory-mapped, keyed, refused when stale, foreign or damaged."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from torchcross.data import FewShotMetaDataset, TaskDescription, TensorTaskSource
from torchcross.data.embeddings import (
    EmbeddedSource,
    EmbeddingCacheError,
    EmbeddingKey,
    Embeddings,
    data_identity,
    embed,
    load_embeddings,
    weights_digest,
)
from torchcross.learners import FineTuner, ProtoNet
from torchcross.learners.policies import HeadPolicy, InnerLoop

ROOT = Path(__file__).resolve().parents[2]


class Counting(nn.Module):
    """A tiny conv backbone that counts its forward calls and the examples it saw."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.calls = 0
        self.examples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.examples += x.shape[0]
        return self.body(x)


def _source(n: int = 40, seed: int = 0) -> TensorTaskSource:
    g = torch.Generator().manual_seed(seed)
    desc = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b", 2: "c"}, "toy")
    return TensorTaskSource(torch.rand(n, 3, 8, 8, generator=g), np.arange(n) % 3, desc)


def test_features_equal_direct_computation_and_modes_are_restored(tmp_path: Path) -> None:
    src, backbone = _source(), Counting()
    backbone.train()
    emb = embed(src, backbone, tmp_path, batch_size=16, preprocessing={"size": 8})
    assert backbone.training
    assert backbone.body[1].training
    backbone.eval()
    with torch.no_grad():
        want = backbone(src.inputs)
    assert emb.features.shape == (40, 4)
    assert isinstance(emb.features, np.memmap)
    torch.testing.assert_close(emb[np.arange(40)], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb[[3, 1]], want[[3, 1]], rtol=1e-5, atol=1e-6)
    assert emb.path is not None
    assert emb.path.parent == tmp_path
    assert emb.path.suffix == ".safetensors"
    assert [p.name for p in tmp_path.iterdir()] == [emb.path.name]  # no temporary left
    in_memory = embed(src, backbone, None, batch_size=16, preprocessing={"size": 8})
    assert in_memory.path is None
    assert np.array_equal(in_memory.features, np.asarray(emb.features))


def test_second_call_reads_the_file_without_calling_the_backbone(tmp_path: Path) -> None:
    src, backbone = _source(), Counting()
    first = embed(src, backbone, tmp_path, batch_size=16)
    assert (backbone.calls, backbone.examples) == (3, 40)  # every example once, in batches
    again = embed(src, backbone, tmp_path, batch_size=16)
    assert backbone.calls == 3
    assert again.path == first.path
    assert np.array_equal(np.asarray(again.features), np.asarray(first.features))


def test_each_key_gets_its_own_file_in_a_folder(tmp_path: Path) -> None:
    src = _source()
    a = embed(src, Counting(0), tmp_path, preprocessing={"size": 8})
    b = embed(src, Counting(1), tmp_path, preprocessing={"size": 8})  # other weights
    c = embed(src, Counting(0), tmp_path, preprocessing={"size": 16})
    d = embed(_source(seed=1), Counting(0), tmp_path, preprocessing={"size": 8}, data={"name": "other"})
    assert len({a.path, b.path, c.path, d.path}) == 4
    assert a.key.backbone["weights"] == weights_digest(Counting(0)) != b.key.backbone["weights"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"backbone": Counting(1)}, r"backbone: 'weights' is \"sha256:"),
        ({"identity": "timm:resnet18"}, r"backbone: 'identity' is \"timm:resnet18\" here"),
        ({"preprocessing": {"size": 16}}, r"preprocessing: 'size' is 16 here, 8 in the other"),
        ({"data": {"dataset_id": "oct"}}, r"data: 'dataset_id' only here"),
    ],
)
def test_a_file_written_for_another_key_is_refused_naming_the_difference(
    tmp_path: Path, change: dict, match: str
) -> None:
    src = _source()
    file = tmp_path / "pinned.safetensors"
    embed(src, Counting(0), file, preprocessing={"size": 8})
    kwargs = {"backbone": Counting(0), "preprocessing": {"size": 8}, **change}
    before = file.read_bytes()
    with pytest.raises(EmbeddingCacheError, match=match):
        embed(src, kwargs.pop("backbone"), file, **kwargs)
    assert file.read_bytes() == before  # never overwritten


def test_a_renamed_file_is_refused(tmp_path: Path) -> None:
    src = _source()
    a = embed(src, Counting(0), tmp_path / "a")
    b_path = embed(src, Counting(1), tmp_path / "b").path
    assert a.path is not None
    assert b_path is not None
    os.replace(a.path, b_path)  # a's features under b's name
    with pytest.raises(EmbeddingCacheError, match=r"computed for another key .*backbone: 'weights'"):
        embed(src, Counting(1), tmp_path / "b")


def test_embeddings_of_other_labels_are_refused_by_the_embedded_source(tmp_path: Path) -> None:
    emb = embed(_source(), Counting(), tmp_path)
    other = TensorTaskSource(torch.zeros(40, 3, 8, 8), (np.arange(40) + 1) % 3, _source().task_description)
    with pytest.raises(ValueError, match="computed for a source with other labels"):
        EmbeddedSource(emb, other)
    with pytest.raises(ValueError, match="hold 40 examples, the source 39"):
        EmbeddedSource(emb, _source(39))


def test_damaged_files_are_refused(tmp_path: Path) -> None:
    src = _source()
    path = embed(src, Counting(), tmp_path).path
    assert path is not None
    good = path.read_bytes()
    edited = bytearray(good)
    edited[-3] ^= 0xFF
    path.write_bytes(bytes(edited))
    with pytest.raises(EmbeddingCacheError, match="other bytes than it was written with"):
        embed(src, Counting(), tmp_path)
    path.write_bytes(good[:-8])
    with pytest.raises(EmbeddingCacheError, match=r"is truncated: \d+ bytes, its header says"):
        embed(src, Counting(), tmp_path)
    path.write_bytes(good[:5])
    with pytest.raises(EmbeddingCacheError, match="truncated"):
        load_embeddings(path)
    path.write_bytes(good + b"\0")
    with pytest.raises(EmbeddingCacheError, match="has bytes after its data"):
        load_embeddings(path)
    path.write_bytes(good)
    assert load_embeddings(path).features.shape == (40, 4)
    with pytest.raises(EmbeddingCacheError, match="is a directory"):
        load_embeddings(tmp_path)


def test_no_pickle_is_ever_loaded(tmp_path: Path) -> None:
    src = _source()
    path = embed(src, Counting(), tmp_path).path
    assert path is not None
    np.save(path.with_suffix(".npy"), np.array([{"x": 1}], dtype=object), allow_pickle=True)
    os.replace(path.with_suffix(".npy"), path)  # a pickled object array under the cache's name
    with pytest.raises(EmbeddingCacheError, match="not a torchcross embeddings file"):
        embed(src, Counting(), tmp_path)
    # a well-formed header that declares an object dtype
    manifest = {"format": "torchcross.embeddings", "version": 1, "shape": [1, 1], "dtype": "O"}
    header = json.dumps(
        {
            "__metadata__": {"torchcross": json.dumps(manifest)},
            "features": {"dtype": "O", "shape": [1, 1], "data_offsets": [0, 8]},
        }
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(EmbeddingCacheError, match="stores dtype 'O'; embeddings are float32"):
        load_embeddings(path)


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="free some space"):
        embed(_source(), Counting(), tmp_path)
    assert list(tmp_path.iterdir()) == []


_KILLED = """
import os, signal, sys, torch
from torch import nn
from torchcross.data import TaskDescription, TensorTaskSource
from torchcross.data.embeddings import embed

class Dies(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        if self.calls == 3 and sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return x.flatten(1)[:, :5]

desc = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "toy")
src = TensorTaskSource(torch.arange(400.0).reshape(40, 10), [0, 1] * 20, desc)
print(embed(src, Dies(), sys.argv[1], batch_size=8).path)
"""


def _run(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], env=env, stdout=subprocess.PIPE, text=True
    )


def test_a_killed_writer_leaves_no_trusted_file(tmp_path: Path) -> None:
    killed = _run(_KILLED, str(tmp_path), "kill")
    killed.communicate(timeout=120)
    assert killed.returncode != 0
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1
    assert left[0].startswith(".embeddings-")
    assert ".tmp-" in left[0]
    src = TensorTaskSource(torch.arange(400.0).reshape(40, 10), [0, 1] * 20, _BINARY)
    emb = embed(src, _Slice(), tmp_path, batch_size=8, identity="__main__.Dies")  # the same key
    assert [p.name for p in tmp_path.iterdir()] == [emb.path.name]  # type: ignore[union-attr]
    np.testing.assert_array_equal(emb.features, np.arange(400.0, dtype=np.float32).reshape(40, 10)[:, :5])


_BINARY = TaskDescription("MULTICLASS_CLASSIFICATION", {0: "a", 1: "b"}, "toy")


class _Slice(nn.Module):
    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        super().__init__()
        self.barrier, self.calls = barrier, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.barrier is not None and self.calls == 2:  # both writers are half way through their files
            self.barrier.wait(timeout=30)
        return x.flatten(1)[:, :5]


def test_two_writers_of_one_key_leave_one_whole_file(tmp_path: Path) -> None:
    src = TensorTaskSource(torch.arange(400.0).reshape(40, 10), [0, 1] * 20, _BINARY)
    barrier = threading.Barrier(2)
    results: list[Embeddings] = []

    def fill() -> None:
        results.append(embed(src, _Slice(barrier), tmp_path, batch_size=8, identity="slice"))

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    assert results[0].path == results[1].path
    assert [p.name for p in tmp_path.iterdir()] == [results[0].path.name]  # type: ignore[union-attr]
    emb = load_embeddings(next(tmp_path.iterdir()))
    np.testing.assert_array_equal(emb.features, np.arange(400.0, dtype=np.float32).reshape(40, 10)[:, :5])


def test_linear_probe_on_cached_features_equals_the_finetuner_on_images(tmp_path: Path) -> None:
    src = _source(60)
    backbone = Counting()
    backbone.eval()
    emb = embed(src, backbone, tmp_path)
    on_images = FewShotMetaDataset(src, n_shot=3, n_query=4, length=3, seed=7)
    on_features = FewShotMetaDataset(EmbeddedSource(emb, src), n_shot=3, n_query=4, length=3, seed=7)
    inner = InnerLoop(lr=0.1, steps=20, optimizer="adam")
    probe = FineTuner(backbone, 4, inner=inner, head=HeadPolicy(init="zero"))
    cached = FineTuner(nn.Identity(), 4, inner=inner, head=HeadPolicy(init="zero"))
    for t_img, t_feat in zip(on_images, on_features):
        torch.testing.assert_close(t_feat.support[1], t_img.support[1], rtol=0, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(t_feat.query[0], backbone(t_img.query[0]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cached.predict(t_feat), probe.predict(t_img), rtol=1e-4, atol=1e-5)
    # nearest centroid on the same features
    logits = ProtoNet(nn.Identity()).predict(next(iter(on_features)))
    assert logits.shape == (12, 3)


def test_float16_storage_and_bad_input(tmp_path: Path) -> None:
    src = _source()
    half = embed(src, Counting(), tmp_path, storage_dtype=torch.float16)
    assert half.features.dtype == np.float16
    assert half[[0]].dtype == torch.float32
    with pytest.raises(TypeError, match=r"storage_dtype must be torch\.float32 or torch\.float16"):
        embed(src, Counting(), tmp_path, storage_dtype=torch.int8)
    with pytest.raises(TypeError, match="preprocessing must be JSON-able"):
        embed(src, Counting(), tmp_path, preprocessing={"transform": len})
    with pytest.raises(ValueError, match=r"features of shape \(batch, width\), got \(40, 3, 8, 8\)"):
        embed(src, nn.Identity(), tmp_path)
    with pytest.raises(TypeError, match="files must be a sequence of paths"):
        data_identity(src, files="images.hdf5")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match=r"indices \[40\] out of range for 40 embedded examples"):
        half[[40]]
    assert list(Path(p).name for p in tmp_path.iterdir()) == [half.path.name]  # type: ignore[union-attr]


def test_data_identity_digests_files(tmp_path: Path) -> None:
    (tmp_path / "images.hdf5").write_bytes(b"abc")
    ident = data_identity(_source(), files=[tmp_path / "images.hdf5"])
    assert ident["files"] == {
        "images.hdf5": "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    }
    key = EmbeddingKey({"identity": "x"}, (1, 2), ident)
    assert key.preprocessing == [1, 2]
    assert key.differences(key) == []
    assert isinstance(Embeddings(np.zeros((2, 3), np.float32), key), Embeddings)


def test_the_cache_benchmark_runs_in_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder on the path
    spec = importlib.util.spec_from_file_location(
        "embedding_cache_bench", ROOT / "benchmarks/embedding_cache.py"
    )
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--json", str(tmp_path / "report.json")])
    assert json.loads((tmp_path / "report.json").read_text())["shots"] == [1, 5]
    assert set(report["totals_s"]) == {"recompute", "cached", "cached+batched"}
    assert report["max_logit_difference"] < 1e-4  # and the AUROCs were equal, or main() would have exited


def test_the_shot_curve_benchmark_runs_in_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts its folder on the path
    spec = importlib.util.spec_from_file_location("shot_curve_bench", ROOT / "benchmarks/shot_curve.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--json", str(tmp_path / "report.json")])
    assert json.loads((tmp_path / "report.json").read_text())["shots"] == [1, 5]
    assert set(report["wall_s"]) == {"cold", "warm"}  # and equal AUROCs, or main() would have exited
    assert [(r["shots"], r["episodes"]) for r in report["rows"]] == [(1, 2), (5, 2)]


def test_the_file_is_read_by_the_safetensors_package(tmp_path: Path) -> None:
    """The cache file is plain safetensors: the reference reader loads the same features and the manifest."""
    from safetensors.torch import load_file, safe_open

    embeddings = embed(_source(), Counting(), tmp_path, preprocessing={"size": 8})
    assert embeddings.path is not None
    loaded = load_file(str(embeddings.path))
    assert list(loaded) == ["features"]
    torch.testing.assert_close(loaded["features"], embeddings[np.arange(40)], rtol=0, atol=0)
    with safe_open(str(embeddings.path), framework="pt") as f:
        assert f.metadata()  # the manifest travels in the header's metadata
