"""Batched uint8 -> tensor conversion, the channel policy and normalize_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from torchcross.datasets._images import images_to_tensor, normalize_batch, resolve_channels, rgb_to_gray
from torchcross.datasets._optional import require


def test_rgb_to_gray_matches_pillow(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (17, 13, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_to_gray(img), np.asarray(Image.fromarray(img).convert("L")))


def test_conversion_in_float64_reference(rng: np.random.Generator) -> None:
    raw = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    x = images_to_tensor(raw, mean=mean, std=std)
    ref = (raw.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).double().numpy(), ref, rtol=1e-6, atol=1e-6)
    assert x.is_contiguous()
    assert x.dtype == torch.float32
    u = images_to_tensor(raw, output="uint8")
    assert torch.equal(u, torch.from_numpy(raw).permute(0, 3, 1, 2))
    assert u.is_contiguous(memory_format=torch.channels_last)  # RGB copied as stored, no transpose
    assert u.untyped_storage().data_ptr() != torch.from_numpy(raw).untyped_storage().data_ptr()  # a copy
    assert torch.equal(normalize_batch(u, mean, std), x)
    assert normalize_batch(u, mean, std).is_contiguous()
    gray = images_to_tensor(raw[..., :1], channels=3, output="uint8")  # (N, H, W, 1) -> 3 channels
    assert gray.shape == (4, 3, 5, 6)
    assert torch.equal(gray[:, 1], torch.from_numpy(raw[..., 0]))


def test_normalisation_ends_exactly_at_minus_one_and_one() -> None:
    x = images_to_tensor(np.array([[[0, 255, 128]]], np.uint8), mean=0.5, std=0.5)
    assert x.flatten().tolist()[:2] == [-1.0, 1.0]
    wide = normalize_batch(torch.tensor([[[[0, 255]]]], dtype=torch.uint8), 0.5, 0.5, dtype=torch.float64)
    assert wide.dtype == torch.float64
    assert wide.flatten().tolist() == [-1.0, 1.0]


def test_normalize_batch_keeps_float_and_moves_devices() -> None:
    x = torch.full((2, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(
        normalize_batch(x, device="cpu", dtype=torch.float64), torch.ones(2, 1, 2, 2, dtype=torch.float64)
    )
    f = torch.rand(2, 1, 2, 2)
    assert torch.equal(normalize_batch(f), f)  # already float: not rescaled


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: images_to_tensor(np.zeros((2, 3, 3), np.float32)), TypeError, "must be uint8"),
        (lambda: images_to_tensor(np.zeros((3, 3), np.uint8)), ValueError, r"\(N, H, W\) or"),
        (lambda: images_to_tensor(np.zeros((2, 3, 3, 2), np.uint8)), ValueError, "1 or 3 channels"),
        (
            lambda: images_to_tensor(np.zeros((2, 3, 3), np.uint8), output="half"),
            ValueError,
            "output must be",
        ),
        (lambda: images_to_tensor(np.zeros((2, 3, 3), np.uint8), mean=0.5), ValueError, "both mean and std"),
        (
            lambda: images_to_tensor(np.zeros((2, 3, 3, 3), np.uint8), mean=(0, 0), std=(1, 1)),
            ValueError,
            "2 values",
        ),
        (
            lambda: images_to_tensor(np.zeros((2, 3, 3), np.uint8), "keep", "uint8", 0.5, 0.5),
            ValueError,
            "normalize_batch",
        ),
        (
            lambda: images_to_tensor(np.zeros((2, 3, 3, 3), np.uint8), mean=0.5, std=(0.2, 0.0, 0.2)),
            ValueError,
            r"std must be non-zero, got std=\(0\.2, 0\.0, 0\.2\)",
        ),
        (lambda: normalize_batch(np.zeros((2, 3, 3))), TypeError, "torch.Tensor"),
        (lambda: normalize_batch(torch.zeros(3, 3, dtype=torch.uint8)), ValueError, r"\(\.\.\., C, H, W\)"),
        (lambda: resolve_channels(True, 3), ValueError, "'keep', 1 or 3"),
        (lambda: require("surely_not_installed_pkg"), ImportError, r"pip install torchcross\[medimeta\]"),
    ],
)
def test_errors(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()
