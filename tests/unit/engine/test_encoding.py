"""Every encoder turns normalised moves into deterministic binary spikes, series by series."""

from __future__ import annotations

import numpy as np
import pytest

from qortex.engine.config import ENCODERS
from qortex.engine.encoding import encode, n_channels


def _moves(batch: int = 5, steps: int = 31, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, steps)).astype(np.float32)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_spikes_are_binary_float32_with_the_declared_channels(encoder: str) -> None:
    spikes = encode(_moves(), encoder, 4, seed=0)
    assert spikes.shape == (5, 31, n_channels(encoder, 4))
    assert spikes.dtype == np.float32
    assert set(np.unique(spikes).tolist()) <= {0.0, 1.0}
    assert spikes.any()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_batch_encodes_exactly_like_its_rows(encoder: str) -> None:
    z = _moves()
    batch = encode(z, encoder, 3, seed=7)
    for i in range(z.shape[0]):
        np.testing.assert_array_equal(batch[i], encode(z[i : i + 1], encoder, 3, seed=7)[0])


def test_delta_encoder_sends_one_event_per_threshold_crossing() -> None:
    z = np.array([[0.3, 0.3, 0.0, -1.2, 0.0]], dtype=np.float32)
    spikes = encode(z, "delta", 2, seed=0).reshape(1, 5, 2, 2)
    # Level 0.3, 0.6, 0.6, -0.6, -0.6; thresholds 0.5 and 1.0.
    assert spikes[0, :, 0, 0].tolist() == [0, 1, 0, 0, 0]  # up past 0.5 at step 1
    assert spikes[0, :, 1, 0].tolist() == [0, 0, 0, 1, 0]  # down by 1.0 (two 0.5 steps) at step 3
    assert spikes[0, :, 1, 1].tolist() == [0, 0, 0, 0, 0]  # -0.6 never crosses -1.0
    assert not spikes[0, :, 0, 1].any()


def test_latency_encoder_fires_earlier_for_larger_moves() -> None:
    z = np.array([[0.2, 3.0]], dtype=np.float32)
    spikes = encode(z, "latency", 4, seed=0).reshape(1, 2, 2, 4)
    small_slot = int(np.argmax(spikes[0, 0, 0]))
    big_slot = int(np.argmax(spikes[0, 1, 0]))
    assert big_slot < small_slot
    assert not spikes[0, :, 1].any()  # no downward moves


def test_population_encoder_fires_the_field_around_the_value() -> None:
    z = np.array([[-3.0, 0.0, 3.0]], dtype=np.float32)
    spikes = encode(z, "population", 4, seed=0)[0]  # 8 fields over [-3, 3]
    assert spikes[0, 0] == 1 and spikes[2, -1] == 1
    assert spikes[1, 3] + spikes[1, 4] >= 1


def test_rate_encoder_is_silent_without_movement_and_busy_with_large_moves() -> None:
    quiet = encode(np.zeros((1, 50), dtype=np.float32), "rate", 4, seed=1)
    loud = encode(np.full((1, 50), 6.0, dtype=np.float32), "rate", 4, seed=1)
    assert quiet.sum() == 0
    assert loud[0, :, :4].mean() > 0.9


def test_unknown_encoder_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoder"):
        encode(_moves(), "morse", 2, seed=0)
