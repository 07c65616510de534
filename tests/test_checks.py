"""The one integer check behind every count, size and seed argument."""

from __future__ import annotations

import numpy as np
import pytest

from torchcross._checks import IntTypeError, check_int


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3)])
def test_python_and_numpy_integers_pass_as_python_ints(value: object) -> None:
    out = check_int(value, "n", 0)
    assert out == 3
    assert type(out) is int


@pytest.mark.parametrize("value", [True, np.bool_(True), 2.0, "2", None, [2]])
def test_non_integers_are_type_errors_that_are_also_value_errors(value: object) -> None:
    with pytest.raises(TypeError, match=f"n must be an int, got {type(value).__name__}: "):
        check_int(value, "n", 0)
    assert issubclass(IntTypeError, ValueError)


def test_minimum_none_and_explanation() -> None:
    assert check_int(None, "length", 1, allow_none=True) is None
    assert check_int(-5, "offset") == -5
    with pytest.raises(ValueError, match=r"^n_way must be >= 2 \(two classes\), got n_way=1$"):
        check_int(1, "n_way", 2, why=" (two classes)")
    with pytest.raises(TypeError, match="length must be an int or None, got str"):
        check_int("3", "length", 1, allow_none=True)
