"""load_backbone: each family's width, preprocessing and identity, local weights, and its errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from backbones_helpers import TINY_VIT

from torchcross.backbones import FAMILIES, Backbone, Preprocessing, load_backbone
from torchcross.backbones.weights import weights_mismatch

VIT = "timm:vit_tiny_patch16_224"


def _images(n: int = 2, size: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _features(b: Backbone) -> torch.Tensor:
    with torch.no_grad():
        return b(b.preprocessing.apply(_images()))


# --- timm ---------------------------------------------------------------------------------------------


def test_timm_width_preprocessing_and_identity() -> None:
    b = load_backbone(VIT, "random", **TINY_VIT)
    assert b.num_features == 32
    assert not b.training
    # timm's pretrained config of the ViT (bicubic, mean/std 0.5, crop 0.9), at the model's own 32x32 input
    assert b.preprocessing == Preprocessing((32, 32), (0.5,) * 3, (0.5,) * 3, "bicubic", 3, "shortest", 0.9)
    assert b.identity.to_dict() == {
        "family": "timm",
        "model": "vit_tiny_patch16_224",
        "weights": "random:seed=0",
        "options": TINY_VIT,
    }
    json.dumps(b.identity.to_dict())
    assert _features(b).shape == (2, 32)
    torch.testing.assert_close(_features(load_backbone(VIT, "random", **TINY_VIT)), _features(b))
    assert not torch.allclose(_features(load_backbone(VIT, "random", seed=1, **TINY_VIT)), _features(b))


def test_timm_weights_file_and_folder_round_trip(tmp_path: Path) -> None:
    b = load_backbone(VIT, "random", seed=3, **TINY_VIT)
    torch.save(b.model.state_dict(), tmp_path / "vit.pth")
    loaded = load_backbone(VIT, tmp_path / "vit.pth", **TINY_VIT)
    torch.testing.assert_close(_features(loaded), _features(b))
    assert loaded.identity.weights.startswith("sha256:")
    assert loaded.identity == load_backbone(VIT, str(tmp_path / "vit.pth"), **TINY_VIT).identity

    from safetensors.torch import save_file
    from timm.models import save_for_hf

    folder = tmp_path / "folder"
    save_for_hf(b.model, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["pretrained_cfg"].update(input_size=[3, 32, 32], mean=[0.1, 0.2, 0.3], crop_pct=1.0)
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in b.model.state_dict().items()}, folder / "model.safetensors")
    from_folder = load_backbone(VIT, folder, **TINY_VIT)
    x = b.preprocessing.apply(_images())
    torch.testing.assert_close(from_folder(x), b(x))
    assert from_folder.preprocessing.mean == (0.1, 0.2, 0.3)  # the folder's pretrained config


def test_timm_weights_for_another_architecture_name_the_keys(tmp_path: Path) -> None:
    torch.save(load_backbone(VIT, "random", **TINY_VIT).model.state_dict(), tmp_path / "vit.pth")
    wider = {**TINY_VIT, "embed_dim": 48, "depth": 2}
    with pytest.raises(
        ValueError, match=r"do not fit the backbone: missing keys \['blocks\.1\..*shape mismatches"
    ):
        load_backbone(VIT, tmp_path / "vit.pth", **wider)


def test_timm_unknown_names_and_missing_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="unknown timm model 'vit_tiny_patch16_22'; close names: vit_tiny_patch16_224"
    ):
        load_backbone("timm:vit_tiny_patch16_22", "random")
    with pytest.raises(FileNotFoundError, match=r"timm weights .*nope\.pth' do not exist"):
        load_backbone(VIT, tmp_path / "nope.pth", **TINY_VIT)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(
        ValueError, match=r"no pretrained weights in the local Hugging Face cache.*download=True"
    ):
        load_backbone(VIT, **TINY_VIT)
    with pytest.raises(ValueError, match="num_classes is fixed to 0"):
        load_backbone(VIT, "random", num_classes=3)


# --- Hugging Face -------------------------------------------------------------------------------------


def test_hf_width_and_preprocessing_from_the_image_processor(hf_folders: dict[str, Path]) -> None:
    vit, dino, resnet = (load_backbone(f"hf:{hf_folders[k]}") for k in ("vit", "dinov2", "resnet"))
    assert (vit.num_features, dino.num_features, resnet.num_features) == (32, 64, 16)  # DINOv2: CLS + mean
    assert vit.preprocessing == Preprocessing((32, 32), (0.5,) * 3, (0.5,) * 3, "bilinear")
    # BitImageProcessor: shortest edge 36, centre crop 32, bicubic, CLIP's mean
    assert dino.preprocessing.input_size == (32, 32)
    assert dino.preprocessing.resize_mode == "shortest"
    assert dino.preprocessing.crop_pct == pytest.approx(32 / 36)
    assert dino.preprocessing.interpolation == "bicubic"
    assert dino.preprocessing.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert resnet.preprocessing.crop_pct == 0.875  # ConvNeXt's crop_pct
    assert dino.unused_parameters == ("model.dinov2.embeddings.mask_token",)
    assert "model.model.dinov2.embeddings.mask_token" in dino.state_dict()  # Backbone.model._Logits.model
    assert vit.identity.weights.startswith("sha256:")
    assert vit.identity.family == "hf"
    assert _features(dino).shape == (2, 64)


def test_hf_random_weights_and_folder_errors(hf_folders: dict[str, Path], tmp_path: Path) -> None:
    random = load_backbone(f"hf:{hf_folders['vit']}", "random")
    assert random.identity.weights == "random:seed=0"
    assert not torch.allclose(_features(random), _features(load_backbone(f"hf:{hf_folders['vit']}")))
    with pytest.raises(ValueError, match="folder '/nonexistent/model' does not exist"):
        load_backbone("hf:/nonexistent/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no config\.json; save the model there"):
        load_backbone(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="is not a local folder and not in the local Hugging Face cache"):
        load_backbone("hf:torchcross-tests/no-such-model")
    with pytest.raises(ValueError, match="reads its weights from its folder"):
        load_backbone(f"hf:{hf_folders['vit']}", tmp_path / "w.pth")


def test_hf_folder_without_image_processor_needs_preprocessing(
    hf_folders: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "bare"
    shutil.copytree(hf_folders["vit"], folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(
        ValueError, match=r"has no preprocessor_config\.json, so its input size, mean and std"
    ):
        load_backbone(f"hf:{folder}")
    given = Preprocessing((32, 32), (0.2,) * 3, (0.3,) * 3)
    assert load_backbone(f"hf:{folder}", preprocessing=given).preprocessing == given


def test_hf_weights_that_do_not_fit_the_config_name_the_keys(
    hf_folders: dict[str, Path], tmp_path: Path
) -> None:
    cfg = json.loads((hf_folders["vit"] / "config.json").read_text())
    for change, match in (
        ({"num_hidden_layers": 2}, r"describes: missing keys \['vit\."),
        (
            {"intermediate_size": 48},
            r"describes: shape mismatches \['vit\..*: \(64,\) in the file, \(48,\) in the model",
        ),
    ):
        folder = tmp_path / str(change)
        shutil.copytree(hf_folders["vit"], folder)
        (folder / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(ValueError, match=match):
            load_backbone(f"hf:{folder}")


# --- OpenCLIP -----------------------------------------------------------------------------------------


def test_open_clip_image_tower_text_tower_and_preprocessing(clip_name: str, tmp_path: Path) -> None:
    b = load_backbone(f"open_clip:{clip_name}", "random")
    assert b.num_features == 16  # the joint embedding width
    assert b.preprocessing.interpolation == "bicubic"
    assert b.preprocessing.input_size == (32, 32)
    assert b.preprocessing.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert b.text_tower is not None
    assert b.text_tower.encode_text(["a photo of a lung", "a photo of a heart"]).shape == (2, 16)
    assert not any(n.startswith("transformer.") for n, _ in b.named_parameters())  # the image tower only
    torch.save(b.text_tower.model.state_dict(), tmp_path / "clip.pt")
    loaded = load_backbone(f"open_clip:{clip_name}", tmp_path / "clip.pt")
    torch.testing.assert_close(_features(loaded), _features(b))
    with pytest.raises(TypeError, match="got one string"):
        b.text_tower.encode_text("a photo")


def test_open_clip_errors(clip_name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown OpenCLIP model 'ViT-B-3'; close names: ViT-B-32"):
        load_backbone("open_clip:ViT-B-3", "random")
    with pytest.raises(ValueError, match="needs weights= a local checkpoint file"):
        load_backbone(f"open_clip:{clip_name}")
    torch.save(load_backbone(VIT, "random", **TINY_VIT).model.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(
        ValueError, match=r"do not fit the backbone: missing keys \[.*unexpected keys \['blocks"
    ):
        load_backbone(f"open_clip:{clip_name}", tmp_path / "vit.pth")
    with pytest.raises(ValueError, match=r"has no open_clip_config\.json"):
        load_backbone(f"open_clip:local-dir:{tmp_path}")


# --- torchvision, families, extras --------------------------------------------------------------------


def test_torchvision_resnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = load_backbone("torchvision:resnet18", "random")
    assert b.num_features == 512
    assert b.preprocessing == Preprocessing(
        (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", 3, "shortest", 224 / 256
    )
    import torchvision

    net = torchvision.models.resnet18(num_classes=7)  # fc of another width: ignored
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    loaded = load_backbone("torchvision:resnet18", tmp_path / "r18.pth")
    torch.testing.assert_close(loaded.model.conv1.weight, net.conv1.weight)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(ValueError, match="ImageNet weights of resnet18 are not in torch's cache"):
        load_backbone("torchvision:resnet18")


def test_family_and_name_errors() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backbone family 'tim'.*families: timm, hf, open_clip, torchvision"
    ):
        load_backbone("tim:resnet18")
    with pytest.raises(ValueError, match="must be '<family>:<model>'"):
        load_backbone("resnet18")
    with pytest.raises(TypeError, match="weights must be None, 'random' or a path"):
        load_backbone(VIT, 3)  # type: ignore[arg-type]
    assert sorted(FAMILIES) == ["hf", "open_clip", "timm", "torchvision"]


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [(VIT, "timm", "timm"), ("hf:org/model", "transformers", "hf"), ("open_clip:RN50", "open_clip", "clip")],
)
def test_a_missing_extra_names_it(
    name: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=rf'pip install "torchcross\[{extra}\]"'):
        load_backbone(name, "random")


# --- the feature pass, identity values ----------------------------------------------------------------


def test_features_in_bfloat16_on_the_cpu() -> None:
    b = load_backbone(VIT, "random", **TINY_VIT).train()
    x = b.preprocessing.apply(_images())
    full, half = b.features(x), b.features(x, dtype=torch.bfloat16)
    assert half.dtype == torch.float32
    assert b.training
    torch.testing.assert_close(half, full, atol=0.1, rtol=0.1)
    assert not half.requires_grad


def test_weights_mismatch_is_none_when_the_weights_fit() -> None:
    net = torch.nn.Linear(2, 3)
    assert weights_mismatch(net, net.state_dict(), "w.pth") is None


def test_open_clip_local_folder_with_its_own_preprocessing(clip_name: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from tiny_foundation_models import CLIP_CONFIG

    b = load_backbone(f"open_clip:{clip_name}", "random", seed=2)
    assert b.text_tower is not None
    folder = tmp_path / "clip"
    folder.mkdir()
    preprocess = {
        "mean": [0.1, 0.2, 0.3],
        "std": [0.3, 0.2, 0.1],
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }
    config = {"model_cfg": CLIP_CONFIG, "preprocess_cfg": preprocess}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in b.text_tower.model.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")
    loaded = load_backbone(f"open_clip:local-dir:{folder}")
    assert loaded.preprocessing == Preprocessing((32, 32), (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), "bilinear")
    x = b.preprocessing.apply(_images())
    torch.testing.assert_close(loaded(x), b(x))
    assert loaded.identity.weights.startswith("sha256:")
    assert loaded.text_tower is not None
    assert loaded.text_tower.encode_text(["a photo"]).shape == (1, 16)


def test_hf_clip_vision_features(tmp_path: Path) -> None:
    import transformers as tf

    config = tf.CLIPConfig(
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 48,
        },
        text_config={
            "hidden_size": 8,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 16,
            "vocab_size": 64,
        },
    )
    tf.CLIPForImageClassification(config).save_pretrained(tmp_path)
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path
    )
    b = load_backbone(f"hf:{tmp_path}")
    assert b.num_features == 24  # the vision tower's width, as the benchmark's TransformersBackbone sees it
    assert b.preprocessing.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert b.text_tower is None
