"""``torchcross run`` with zero-shot (issue 22): a Hugging Face CLIP folder gets its text tower for the
method that declares ``needs_text_tower``, ``check_protocol`` refuses a backbone without one and an ordinal
target before anything trains, and ``[backbone] feature_dtype = "bfloat16"`` runs the frozen feature pass
in bf16 on the CPU.

Tiny models saved offline, the demo MedIMeta data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_foundation_models import hub_offline, save_hf_models
from zero_shot_helpers import save_tiny_hf_clip

from torchcross.cli.app import main
from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.data.embeddings import load_embeddings
from torchcross.protocol import run_protocol
from torchcross.protocol.config import config_from_dict
from torchcross.protocol.fingerprint import TRAINING_READS, fingerprint
from torchcross.protocol.plan import check_protocol
from torchcross.protocol.registry import get_method, register_method, unregister_method

TARGET = "digits_scan_a/even digit"


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    """Nothing here may reach the Hugging Face hub."""
    with hub_offline():
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_medimeta(tmp_path_factory.mktemp("data"), size=16)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_hf_clip(tmp_path_factory.mktemp("models") / "clip")


def _raw(root: Path, out: Path, backbone: dict[str, Any], methods: list[str], target: str = TARGET) -> Any:
    return {
        "data": {"root": str(root), "targets": [target], "min_class_size": 0},
        "evaluation": {"methods": methods, "n_episodes": 3, "n_shot": 2, "n_query": 4},
        "backbone": backbone,
        "finetune": {"steps": 2, "head_init": "zero"},
        "zero-shot": {"template": "a scan of an {} digit"},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1, "logger": "none"},
    }


def _cached(folder: Path) -> list[tuple[dict[str, Any], np.ndarray]]:
    """``(backbone identity, features)`` of every embedding cache file in ``folder``."""
    out = []
    for path in sorted(folder.glob("*.safetensors")):
        embeddings = load_embeddings(path)
        out.append((embeddings.key.backbone["identity"], np.asarray(embeddings.features)))
    return out


def test_hf_clip_folder_runs_linear_probe_and_zero_shot(root: Path, clip: Path, tmp_path: Path) -> None:
    """The zero-shot method loads the folder as CLIPModel; the linear probe keeps the image model."""
    out = tmp_path / "out"
    config = config_from_dict(_raw(root, out, {"name": f"hf:{clip}"}, ["linear-probe", "zero-shot"]))
    check_protocol(config)
    result = run_protocol(config, progress=False, log=None)
    for method in ("linear-probe", "zero-shot"):
        rows = result.episodes.where(method=method).to_records()
        assert len(rows) == 3
        assert all(0.0 <= r["auroc"] <= 1.0 for r in rows)
    assert (out / "results.csv").is_file()
    methods = [line.split(",")[0] for line in (out / "results.csv").read_text().splitlines()[1:]]
    assert methods == ["linear-probe", "zero-shot"]
    # two feature sets: the image model's pooled features, and CLIPModel's projected ones
    identities = [identity for identity, _ in _cached(out / "embeddings")]
    assert sorted(json.dumps(i["options"]) for i in identities) == ['{"text_tower": true}', "{}"]


def test_check_refuses_zero_shot_without_a_text_tower_before_training(root: Path, tmp_path: Path) -> None:
    vit = save_hf_models(tmp_path / "hf", ("vit",))["vit"]
    for backbone, why in (
        ({"name": "conv4", "weights": "random"}, "backbone Conv4 has no text tower"),
        ({"name": f"hf:{vit}"}, "text_tower=True needs a CLIP model folder"),
    ):
        out = tmp_path / f"out-{backbone['name'][:2]}"
        config = config_from_dict(_raw(root, out, backbone, ["IM-PT", "zero-shot"]))
        with pytest.raises(
            ValueError,
            match=r"method 'zero-shot' needs a backbone with a text tower, but \[backbone\] name = "
            rf"'{backbone['name'][:4]}.*{why}.*set \[backbone\] name to a CLIP-style backbone.*"
            r"or leave 'zero-shot' out of \[evaluation\] methods",
        ):
            check_protocol(config)
        assert not (out / "evaluations").exists()  # refused before anything trained


def test_check_refuses_zero_shot_on_an_ordinal_target_task(root: Path, clip: Path, tmp_path: Path) -> None:
    raw = _raw(root, tmp_path / "out", {"name": f"hf:{clip}"}, ["zero-shot"], "digits_scan_a/ink level")
    with pytest.raises(
        ValueError,
        match=r"method 'zero-shot' cannot evaluate target task 'digits_scan_a/ink level': it is a "
        r"ORDINAL_REGRESSION task.*leave the task out \(\[data\] target_tasks\)",
    ):
        check_protocol(config_from_dict(raw))


def test_run_check_on_a_toml_config_refuses_zero_shot_with_conv4(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        f'[data]\nroot = "{root.as_posix()}"\ntargets = ["{TARGET}"]\n'
        '[evaluation]\nmethods = ["zero-shot"]\n[backbone]\nname = "conv4"\nweights = "random"\n'
        f'[run]\nout_dir = "{(tmp_path / "out").as_posix()}"\nplot = false\n',
        encoding="utf-8",
    )
    assert main(["run", str(toml), "--check"]) != 0
    assert "method 'zero-shot' needs a backbone with a text tower" in capsys.readouterr().err


def test_like_zero_shot_takes_its_capabilities() -> None:
    spec = register_method("my-zero-shot", like="zero-shot")
    try:
        assert spec.needs_text_tower
        assert spec.task_types == get_method("zero-shot").task_types
        assert "ORDINAL_REGRESSION" not in (spec.task_types or ())
        assert not get_method("linear-probe").needs_text_tower
        assert get_method("IM-PT").task_types is None
    finally:
        unregister_method("my-zero-shot")


def test_feature_dtype_bfloat16_runs_the_feature_pass_in_bf16_on_the_cpu(
    root: Path, clip: Path, tmp_path: Path
) -> None:
    """Its own cache files, features close to the float32 ones; unset and "float32" are the same config."""
    cache = tmp_path / "cache"
    backbone = {"name": f"hf:{clip}"}
    features: dict[str, dict[str, np.ndarray]] = {}
    for dtype in ("float32", "bfloat16"):
        methods = ["linear-probe", "zero-shot"]
        raw = _raw(root, tmp_path / dtype, {**backbone, "feature_dtype": dtype}, methods)
        raw["run"]["embedding_cache"] = str(cache)
        result = run_protocol(config_from_dict(raw), progress=False, log=None)
        assert len(result.episodes.where(method="zero-shot").to_records()) == 3
        assert all(0.0 <= r["auroc"] <= 1.0 for r in result.episodes.to_records())
    cached = _cached(cache)
    assert len(cached) == 4  # two backbones (image model, CLIPModel) x two dtypes
    for ident, array in cached:
        assert np.isfinite(array).all()
        assert array.dtype == np.float32
        features.setdefault(json.dumps(ident["options"]), {})[ident.get("feature_dtype", "float32")] = array
    for pair in features.values():
        np.testing.assert_allclose(pair["bfloat16"], pair["float32"], atol=0.1, rtol=0.1)
        assert not np.array_equal(pair["bfloat16"], pair["float32"])
    # "float32" is the default: the same config, fingerprint and results.json as leaving it out
    plain = config_from_dict(_raw(root, tmp_path / "o", backbone, ["linear-probe"]))
    said = config_from_dict(_raw(root, tmp_path / "o", {**backbone, "feature_dtype": "float32"}, ["IM-PT"]))
    bf16 = config_from_dict(_raw(root, tmp_path / "o", {**backbone, "feature_dtype": "bfloat16"}, ["IM-PT"]))
    assert said.backbone == plain.backbone
    assert fingerprint(plain, TRAINING_READS) == fingerprint(said, TRAINING_READS)
    assert fingerprint(bf16, TRAINING_READS) != fingerprint(said, TRAINING_READS)


def test_feature_dtype_refuses_other_values(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[backbone\] feature_dtype = 'float16' is not one of 'float32', "):
        config_from_dict(_raw(root, tmp_path, {"name": "conv4", "feature_dtype": "float16"}, ["IM-PT"]))


def test_feature_dtype_bfloat16_with_a_built_in_backbone(root: Path, tmp_path: Path) -> None:
    """conv4 (keyed by its weights' digest): a bf16 key of its own, scores within [0, 1]."""
    cache = tmp_path / "cache"
    for dtype in ("float32", "bfloat16"):
        backbone = {"name": "conv4", "weights": "random", "hidden": 8, "feature_dtype": dtype}
        raw = _raw(root, tmp_path / dtype, backbone, ["linear-probe"])
        raw["run"]["embedding_cache"] = str(cache)
        records = run_protocol(config_from_dict(raw), progress=False, log=None).episodes.to_records()
        assert len(records) == 3
        assert all(0.0 <= r["auroc"] <= 1.0 for r in records)
    dtypes = sorted(ident.get("feature_dtype", "float32") for ident, _ in _cached(cache))
    assert dtypes == ["bfloat16", "float32"]
