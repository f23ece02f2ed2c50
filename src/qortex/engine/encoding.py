"""Spike encoders: normalised differences (batch, T) to binary spikes (batch, T, channels).

Every encoder is deterministic and treats each series independently, so a batch gives exactly
the spikes its series give one by one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qortex.engine.config import ENCODERS

__all__ = ["encode", "n_channels"]

F32 = npt.NDArray[np.float32]

# Normalised differences are mostly within +-3 robust scales.
POPULATION_RANGE = 3.0
DELTA_BASE = 0.5


def n_channels(encoder: str, k: int) -> int:
    """Returns the number of spike channels an encoder emits for `k` channels per polarity."""
    if encoder in ENCODERS:
        return 2 * k
    raise ValueError(f"unknown encoder {encoder!r}")


def encode(z: F32, encoder: str, k: int, seed: int) -> F32:
    """Encodes normalised differences `z` (batch, T) into spikes (batch, T, channels), float32."""
    if encoder == "rate":
        return _rate(z, k, seed)
    if encoder == "latency":
        return _latency(z, k)
    if encoder == "delta":
        return _delta(z, k)
    if encoder == "population":
        return _population(z, 2 * k)
    raise ValueError(f"unknown encoder {encoder!r}")


def _polarities(z: F32) -> tuple[F32, F32]:
    return np.maximum(z, 0.0), np.maximum(-z, 0.0)


def _rate(z: F32, k: int, seed: int) -> F32:
    """Rate code: per polarity, k channels fire with probability rising with the magnitude.

    The random thresholds are drawn once from the seed per (time step, channel) and shared by
    every series, which keeps the code deterministic and independent of batch composition.
    """
    t = z.shape[1]
    thresholds = np.random.default_rng([seed, 0x5A7E]).uniform(0.0, 1.0, size=(t, 2, k)).astype(np.float32)
    up, down = _polarities(z)
    intensity = np.stack([np.tanh(up / 2.0), np.tanh(down / 2.0)], axis=2)  # (batch, T, 2)
    spikes = intensity[:, :, :, None] > thresholds[None]
    return spikes.reshape(z.shape[0], t, 2 * k).astype(np.float32)


def _latency(z: F32, k: int) -> F32:
    """Latency (time-to-first-spike) code: each step is split into k sub-slots per polarity.

    A larger move fires in an earlier slot; the slots are laid out as channels so the time axis
    keeps its length. A move smaller than the last slot's level does not fire at all.
    """
    up, down = _polarities(z)
    mag = np.stack([up, down], axis=2)  # (batch, T, 2)
    # Slot s fires when exp(-mag) falls in [s/k, (s+1)/k): big magnitude, early slot.
    slot = np.floor(np.exp(-mag) * k).astype(np.int64)
    spikes = slot[:, :, :, None] == np.arange(k)[None, None, None, :]
    return np.asarray(spikes.reshape(z.shape[0], z.shape[1], 2 * k), dtype=np.float32)


def _delta(z: F32, k: int) -> F32:
    """Send-on-delta code on the cumulative level, with k thresholds 0.5, 1, 2, ... per polarity.

    A channel with threshold d fires when the level has moved by at least d since that channel's
    last event; its reference then moves by whole multiples of d. Tracked in units of d (powers
    of two, so the division is exact), a step costs three numpy calls whatever the batch size.
    """
    batch, t = z.shape
    deltas = (DELTA_BASE * 2.0 ** np.arange(k)).astype(np.float32)
    scaled = np.cumsum(z, axis=1, dtype=np.float32)[:, :, None] / deltas  # (batch, T, k)
    ref = np.zeros((batch, k), dtype=np.float32)  # reference level, in units of each threshold
    moved = np.empty((batch, k), dtype=np.float32)
    crossings = np.empty((t, batch, k), dtype=np.float32)
    for step in range(t):
        np.subtract(scaled[:, step], ref, out=moved)
        np.trunc(moved, out=crossings[step])
        ref += crossings[step]
    out = np.empty((batch, t, 2, k), dtype=np.float32)
    np.greater_equal(crossings.transpose(1, 0, 2), 1.0, out=out[:, :, 0, :])
    np.less_equal(crossings.transpose(1, 0, 2), -1.0, out=out[:, :, 1, :])
    return out.reshape(batch, t, 2 * k)


def _population(z: F32, channels: int) -> F32:
    """Population code: Gaussian receptive fields tile [-3, 3]; a field fires above half height."""
    centres = np.linspace(-POPULATION_RANGE, POPULATION_RANGE, channels, dtype=np.float32)
    width = np.float32(2.0 * POPULATION_RANGE / max(channels - 1, 1))
    response = np.exp(-0.5 * ((z[:, :, None] - centres) / width) ** 2)
    return np.asarray(response >= 0.5, dtype=np.float32)
