"""``torchcross run`` with backbones from the ecosystem (issue 22, item 1; the frozen-feature linear probe
of item 2; the ``fsl-benchmark`` fine-tuning preset of item 3): tiny timm, Hugging Face and OpenCLIP models
saved offline, on the demo MedIMeta data."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_foundation_models import hub_offline, save_hf_models, save_open_clip_folder, save_timm_folder

from torchcross.cli.app import main
from torchcross.cli.demo_data import write_demo_medimeta
from torchcross.protocol import run_protocol
from torchcross.protocol.config import config_from_dict
from torchcross.protocol.fingerprint import TRAINING_READS, Reads, fingerprint
from torchcross.protocol.plan import check_protocol

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
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``[backbone]`` sections of a tiny timm, Hugging Face and OpenCLIP model."""
    tmp = tmp_path_factory.mktemp("models")
    hf = save_hf_models(tmp / "hf", ("vit",))
    return {
        "timm": {"name": "timm:vit_tiny_patch16_224", "weights": str(save_timm_folder(tmp / "timm"))},
        "hf": {"name": f"hf:{hf['vit']}"},
        "open_clip": {"name": f"open_clip:local-dir:{save_open_clip_folder(tmp / 'clip')}"},
    }


def _config(root: Path, out: Path, backbone: dict[str, Any], **sections: Any) -> Any:
    raw: dict[str, Any] = {
        "data": {"root": str(root), "targets": [TARGET], "min_class_size": 0},
        "evaluation": {"methods": ["IM-PT", "linear-probe"], "n_episodes": 3, "n_shot": 2, "n_query": 4},
        "backbone": backbone,
        "finetune": {"steps": 2, "head_init": "zero", "batch_norm": "frozen"},
        "run": {"out_dir": str(out), "plot": False, "num_threads": 1, "logger": "none"},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return config_from_dict(raw)


class _Forwards:
    """Counts the backbone passes of the embedding cache."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torchcross.data.embeddings as emb

        self.calls = 0
        forward = emb._forward

        def counted(*args: Any) -> Any:
            self.calls += 1
            return forward(*args)

        monkeypatch.setattr(emb, "_forward", counted)


@pytest.mark.parametrize("family", ["timm", "hf", "open_clip"])
def test_run_with_a_backbone_of_each_family_writes_results(
    family: str, root: Path, models: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    config = _config(root, tmp_path / "out", models[family])
    plan = check_protocol(config)
    assert (plan.in_channels, plan.image_size) == (3, 32)  # the model's preprocessing, not the data's 16
    result = run_protocol(config, progress=False, log=None)
    records = result.episodes.to_records()
    assert sorted({r["method"] for r in records}) == ["IM-PT", "linear-probe"]
    assert len(records) == 6
    assert all(0.0 <= r["auroc"] <= 1.0 for r in records)
    assert len(list((tmp_path / "out" / "embeddings").glob("*.safetensors"))) == 1
    assert (tmp_path / "out" / "results.csv").is_file()


def test_linear_probe_features_are_cached_once_and_equal_the_uncached_probe(
    root: Path, models: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards = _Forwards(monkeypatch)
    cache = tmp_path / "shared-cache"
    config = _config(
        root,
        tmp_path / "a",
        models["hf"],
        evaluation={"methods": ["linear-probe"]},
        run={"seeds": [0, 1], "embedding_cache": str(cache)},
    )
    result = run_protocol(config, progress=False, log=None)
    first = forwards.calls
    assert first > 0
    assert len(list(cache.glob("*.safetensors"))) == 1  # seed 1 read seed 0's features
    other = _config(
        root,
        tmp_path / "b",
        models["hf"],
        evaluation={"methods": ["linear-probe"]},
        run={"embedding_cache": str(cache)},
    )
    again = run_protocol(other, progress=False, log=None)
    assert forwards.calls == first  # another run, the same features: read from the shared cache
    assert [r["auroc"] for r in again.episodes.to_records()] == [
        r["auroc"] for r in result.episodes.to_records() if r["seed"] == 0
    ]

    # the same probe without the cache: a frozen backbone (eval mode) fine-tuned on the images' episodes
    from torchcross.data.metadataset import EpisodeSet
    from torchcross.evaluation.episodic import evaluate
    from torchcross.learners import FineTuner, HeadPolicy, InnerLoop
    from torchcross.protocol.backbone import load_config_backbone
    from torchcross.protocol.plan import open_split

    backbone = load_config_backbone(models["hf"]["name"])
    source = open_split(other, *TARGET.split("/"), "all", 3, 32)
    (path,) = (tmp_path / "b" / "episodes" / "digits_scan_a").glob("*.json")
    episodes = EpisodeSet.load(path, source)
    probe = FineTuner(
        backbone,
        backbone.num_features,
        inner=InnerLoop(lr=1e-3, steps=2, optimizer="adam"),
        finetune_backbone=False,
        head=HeadPolicy(init="zero", seed=0, key="episode"),
        batch_norm="frozen",
    )
    uncached = evaluate(probe, episodes.as_dataset(source), method="linear-probe", progress=False)
    torch.testing.assert_close(
        torch.tensor([r["auroc"] for r in uncached.records]),
        torch.tensor([r["auroc"] for r in again.episodes.to_records()]),
    )


def test_a_changed_weights_file_changes_the_fingerprint(root: Path, tmp_path: Path) -> None:
    folder = save_timm_folder(tmp_path / "timm", seed=0)
    config = _config(root, tmp_path / "out", {"name": "timm:vit_tiny_patch16_224", "weights": str(folder)})
    before = fingerprint(config, TRAINING_READS, method="IM-PT")
    assert fingerprint(config, TRAINING_READS, method="IM-PT") == before
    save_timm_folder(folder, seed=1)  # the same path, other weights
    assert fingerprint(config, TRAINING_READS, method="IM-PT") != before


def test_check_names_the_config_key_for_bad_names_weights_and_extras(
    root: Path, models: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def check(backbone: dict[str, Any]) -> None:
        check_protocol(_config(root, tmp_path / "out", backbone))

    with pytest.raises(ValueError, match=r"\[backbone\] name = 'timm:vit_tiny_patch16_22'.*close names"):
        check({"name": "timm:vit_tiny_patch16_22", "weights": "random"})
    import timm

    torch.save(timm.create_model("resnet10t", num_classes=0).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"\[backbone\] name = 'timm:vit_tiny_patch16_224'.*missing keys"):
        check({"name": "timm:vit_tiny_patch16_224", "weights": str(tmp_path / "resnet.pth")})
    with pytest.raises(FileNotFoundError, match=r"\[backbone\] weights = '.*nowhere.pth'"):
        check({"name": "timm:vit_tiny_patch16_224", "weights": str(tmp_path / "nowhere.pth")})
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"\[backbone\] name = 'timm:resnet18'.*torchcross\[timm\]"):
        check({"name": "timm:resnet18", "weights": "random"})
    with pytest.raises(ValueError, match=r"unknown backbone family 'tim'"):
        _config(root, tmp_path, {"name": "tim:resnet18"})


def test_the_backbones_preprocessing_replaces_the_data_settings(
    root: Path, models: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"\[data\] image_size = 32 .* remove \[data\] image_size"):
        _config(root, tmp_path, models["hf"], data={"image_size": 32})
    with pytest.raises(ValueError, match=r"\[data\] normalize = 'half' .* its own mean and std"):
        _config(root, tmp_path, models["hf"], data={"normalize": "half"})
    with pytest.raises(ValueError, match=r"weights = 'default' is for '<family>:<model>' backbones"):
        _config(root, tmp_path, {"name": "conv4", "weights": "default"})


def test_the_fsl_benchmark_preset_sets_the_authors_fixed_fine_tuning(root: Path, tmp_path: Path) -> None:
    backbone = {"name": "conv4", "weights": "random"}
    ft = _config(root, tmp_path, backbone, finetune={"preset": "fsl-benchmark", "steps": 150}).finetune
    assert (ft.lr, ft.steps, ft.head_init, ft.batch_norm) == (1e-4, 150, "zero", "frozen")
    raw = {"data": {"root": str(root), "targets": [TARGET]}, "run": {"out_dir": str(tmp_path)}}
    preset = config_from_dict({**raw, "finetune": {"preset": "fsl-benchmark"}})
    written = config_from_dict(
        {**raw, "finetune": {"lr": 1e-4, "steps": 150, "head_init": "zero", "batch_norm": "frozen"}}
    )
    reads = Reads(("finetune",))
    assert fingerprint(preset, reads) != fingerprint(config_from_dict(raw), reads)
    assert fingerprint(preset, reads) == fingerprint(written, reads)  # the values count, not the name
    with pytest.raises(
        ValueError, match=r"'fsl-benchmark' sets steps = 150, lr = 0.0001.*remove lr = 0.001 "
    ):
        config_from_dict({**raw, "finetune": {"preset": "fsl-benchmark", "lr": 1e-3}})


def test_torchcross_run_check_on_a_toml_config(
    root: Path, models: dict[str, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        f"""
[data]
root = "{root}"
targets = ["{TARGET}"]

[backbone]
name = "{models["hf"]["name"]}"

[evaluation]
methods = ["linear-probe"]

[run]
out_dir = "out"
""",
        encoding="utf-8",
    )
    assert main(["run", str(path), "--check"]) == 0
    assert "config ok" in capsys.readouterr().out


def test_linear_probe_selection_episodes_read_cached_features(root: Path, tmp_path: Path) -> None:
    config = _config(
        root,
        tmp_path / "out",
        {"name": "conv4", "hidden": 8, "weights": "random"},
        data={"image_size": 16},
        evaluation={"methods": ["linear-probe"]},
        selection={"mode": "target", "lrs": [1e-3, 1e-2], "steps": [1, 2], "n_episodes": 2, "split": "all"},
    )
    result = run_protocol(config, progress=False, log=None)
    records = result.episodes.to_records()
    assert len(records) == 3
    assert {r["selected_lr"] for r in records} <= {1e-3, 1e-2}
    # the built-in backbone's features are keyed by its weights: another seed, another file
    assert len(list((tmp_path / "out" / "embeddings").glob("*.safetensors"))) == 1
