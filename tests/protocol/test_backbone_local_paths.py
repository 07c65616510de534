"""``[backbone] name = "hf:<folder>"`` with a relative folder resolves beside the config file."""

from __future__ import annotations

from pathlib import Path

from torchcross.protocol.config import load_config

CONFIG = """
[data]
root = "data"
targets = ["toy"]

[run]
out_dir = "out"

[backbone]
name = "{name}"

[[backbones]]
name = "{name}"

[[backbones]]
name = "conv4"
"""


def _load(tmp_path: Path, name: str) -> tuple[str, ...]:
    folder = tmp_path / "experiment"
    folder.mkdir(exist_ok=True)
    (folder / "run.toml").write_text(CONFIG.format(name=name), encoding="utf-8")
    cfg = load_config(folder / "run.toml")
    return (cfg.backbone.name, *(b.name for b in cfg.backbones))


def test_a_relative_model_folder_beside_the_config_is_resolved(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "experiment" / "models" / "vit").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the working directory has no such folder
    want = "hf:" + str((tmp_path / "experiment" / "models" / "vit").resolve())
    assert _load(tmp_path, "hf:models/vit") == (want, want, "conv4")
    (tmp_path / "experiment" / "clip").mkdir()
    clip = _load(tmp_path, "open_clip:local-dir:clip")[0]
    assert clip == "open_clip:local-dir:" + str((tmp_path / "experiment" / "clip").resolve())


def test_hub_ids_and_absolute_folders_are_kept(tmp_path: Path) -> None:
    assert _load(tmp_path, "hf:facebook/dinov2-small")[0] == "hf:facebook/dinov2-small"
    absolute = str(tmp_path / "elsewhere")
    assert _load(tmp_path, f"hf:{absolute}")[0] == f"hf:{absolute}"
    assert _load(tmp_path, "timm:resnet18")[0] == "timm:resnet18"
