"""Preprocessing: a frozen, JSON-stable value; apply() resizes, crops and normalises as torchvision does."""

from __future__ import annotations

import json

import pytest
import torch

from torchcross.backbones import Preprocessing

P = Preprocessing((8, 6), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), "bicubic", 3, "shortest", 0.75)


def test_to_dict_is_json_and_round_trips() -> None:
    data = P.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "input_size": [8, 6],
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.25, 0.3],
        "interpolation": "bicubic",
        "channels": 3,
        "resize_mode": "shortest",
        "crop_pct": 0.75,
    }
    assert Preprocessing.from_dict(data) == P
    assert hash(Preprocessing.from_dict(data)) == hash(P)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": (0, 4)}, r"input_size must be \(H, W\) of positive ints"),
        ({"mean": (0.5, 0.5)}, "mean must hold 3 finite numbers"),
        ({"std": (1.0, 0.0, 1.0)}, "std must be > 0"),
        ({"interpolation": "lanczos"}, "interpolation must be one of"),
        ({"resize_mode": "crop"}, "resize_mode must be one of"),
        ({"crop_pct": 1.5}, r"crop_pct must be in \(0, 1\]"),
        ({"channels": 0}, "channels must be a positive int"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object], match: str) -> None:
    values = {"input_size": (4, 4), "mean": (0.5,) * 3, "std": (0.5,) * 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        Preprocessing(**values)  # type: ignore[arg-type]


def test_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown preprocessing keys \['size'\]"):
        Preprocessing.from_dict({**P.to_dict(), "size": 3})


def test_apply_scales_uint8_repeats_grey_and_takes_one_image() -> None:
    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (2, 1, 12, 10), generator=g, dtype=torch.uint8)
    out = P.apply(grey)
    assert out.shape == (2, 3, 8, 6)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, P.apply(grey.float() / 255))
    torch.testing.assert_close(P.apply(grey[0]), out[0])
    # the channels differ only by the per-channel normalisation
    torch.testing.assert_close(out[:, 1] * 0.25 + 0.5, out[:, 0] * 0.2 + 0.4)
    with pytest.raises(ValueError, match="images have 2 channels, the backbone takes 3"):
        P.apply(torch.zeros(1, 2, 8, 6))
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\) or \(C, H, W\)"):
        P.apply(torch.zeros(8, 6))


def test_an_image_of_the_input_size_is_only_normalised() -> None:
    p = Preprocessing((4, 4), (0.5,) * 3, (0.25,) * 3)
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(p.apply(x), (x - 0.5) / 0.25)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize(("resize_mode", "crop_pct"), [("squash", 1.0), ("squash", 0.8), ("shortest", 0.875)])
def test_apply_agrees_with_its_torchvision_transform(
    interpolation: str, resize_mode: str, crop_pct: float
) -> None:
    p = Preprocessing((14, 14), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), interpolation, 3, resize_mode, crop_pct)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 30, 40), generator=g, dtype=torch.uint8)
    torch.testing.assert_close(p.apply(image), p.to_torchvision()(image))


def test_shortest_side_keeps_the_aspect_ratio_and_crops_the_centre() -> None:
    p = Preprocessing((4, 4), (0.0,), (1.0,), "nearest", 1, "shortest", 1.0)
    assert p.resize_size((8, 16)) == (4, 8)
    image = torch.zeros(1, 8, 16)
    image[:, :, 4:12] = 1.0  # the centre half of the columns
    assert p.apply(image).eq(1.0).all()
