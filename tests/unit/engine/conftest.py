"""Shared engine fixtures: small fitted models on synthetic series with real structure."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from qortex.engine import EngineConfig, Predictor

try:  # Multi-threaded BLAS on tiny matrices only adds contention on a shared CI box.
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with the dev tools
    threadpool_limits = None

# Small enough that the whole engine suite stays fast, large enough to exercise every stage.
SMALL_CONFIG = EngineConfig(window=32, n_neurons=48, n_qubits=4, n_quantum_layers=2, max_iter=200)


def noisy_sine(n: int, seed: int, period: float = 17.0, noise: float = 0.3) -> npt.NDArray[np.float64]:
    """A sine with random phase plus Gaussian noise: its direction is predictable from its past."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + noise * rng.standard_normal(n) + 10.0


@pytest.fixture(scope="session", autouse=True)
def _single_blas_thread() -> Iterator[None]:
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def sine_model() -> Predictor:
    """The default configuration fitted on noisy sines."""
    return Predictor(EngineConfig()).fit([noisy_sine(500, s) for s in range(6)], horizon=1, lineage={"data": "sine"})


@pytest.fixture(scope="session")
def small_model() -> Predictor:
    """A small configuration fitted on noisy sines, for property tests."""
    return Predictor(SMALL_CONFIG).fit([noisy_sine(400, s) for s in range(4)], horizon=1)
