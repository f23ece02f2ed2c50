"""Row-by-row products: a row gets the same bits alone, in any batch and in any memory layout."""

from __future__ import annotations

import numpy as np
import pytest

from qortex.engine.rowwise import row_products


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("k", "m"), [(16, 4), (37, 5), (512, 16), (600, 0)])
def test_each_row_gets_the_same_bits_alone_as_in_a_batch(dtype: type, k: int, m: int) -> None:
    rng = np.random.default_rng(k)
    x = rng.standard_normal((33, k)).astype(dtype)
    w = rng.standard_normal((k, m) if m else k).astype(dtype)
    together = row_products(x, w)
    np.testing.assert_allclose(together, x @ w, rtol=1e-4, atol=1e-4)
    column_major = np.asfortranarray(x)
    for i in range(x.shape[0]):
        alone = row_products(x[i : i + 1].copy(), w)[0]
        np.testing.assert_array_equal(alone, together[i])
    np.testing.assert_array_equal(row_products(column_major, w), together)
