"""Matrix products whose rows come out with the same bits whatever the batch size.

One (batch, k) @ (k, m) product lets BLAS choose its kernel, and with it the order of the sums,
by the batch size and the memory layout, so a series would get slightly different numbers alone
than inside a batch (and the service pools many callers' series into one batch). A stack of
(1, k) @ (k, m) products over C-ordered rows makes the same call for every row.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["row_products"]

A = npt.NDArray[np.floating]


def row_products(x: A, w: A) -> A:
    """Returns x @ w for x (batch, k) and w (k, m) or (k,), computed row by row."""
    rows = np.ascontiguousarray(x)[:, None, :]
    product: A = np.matmul(rows, w[:, None] if w.ndim == 1 else w)
    return product[:, 0, 0] if w.ndim == 1 else product[:, 0, :]
