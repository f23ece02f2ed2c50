"""The LIF reservoir: seeded, exact under batching, and obeying its neuron dynamics."""

from __future__ import annotations

import numpy as np

from qortex.engine.reservoir import GRID, SPARSE_MIN_BATCH, ReservoirParams, make_weights, simulate

PARAMS = ReservoirParams(membrane_tau=8.0, threshold=1.0, reset=0.0, refractory=2, trace_tau=4.0, recent_steps=8)


def _weights(seed: int = 0, n: int = 64, radius: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    return make_weights(
        n_inputs=8,
        n_neurons=n,
        connectivity=0.1,
        input_connectivity=0.5,
        spectral_radius=radius,
        input_scale=1.2,
        seed=seed,
    )


def _spikes(batch: int, steps: int = 40, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, steps, 8)) < 0.3).astype(np.float32)


def test_weights_are_seeded_on_the_exact_grid_with_the_requested_spectral_radius() -> None:
    w_in, w_rec = _weights(seed=3)
    again_in, again_rec = _weights(seed=3)
    np.testing.assert_array_equal(w_rec, again_rec)
    np.testing.assert_array_equal(w_in, again_in)
    assert not np.array_equal(w_rec, _weights(seed=4)[1])
    assert np.all(np.round(w_rec / GRID) * GRID == w_rec)
    assert np.diag(w_rec).sum() == 0
    radius = np.max(np.abs(np.linalg.eigvals(w_rec.astype(np.float64))))
    assert abs(radius - 0.9) < 0.01
    assert 0.05 < np.count_nonzero(w_rec) / w_rec.size < 0.15


def test_sparse_and_dense_paths_agree_bit_for_bit() -> None:
    w_in, w_rec = _weights()
    spikes = _spikes(SPARSE_MIN_BATCH + 3)
    big = simulate(spikes, w_in, w_rec, PARAMS)  # sparse recurrent product
    for i in (0, 5, SPARSE_MIN_BATCH + 2):
        one = simulate(spikes[i : i + 1], w_in, w_rec, PARAMS)  # dense recurrent product
        np.testing.assert_array_equal(big.features()[i], one.features()[0])


def test_silence_in_gives_silence_out() -> None:
    w_in, w_rec = _weights()
    run = simulate(np.zeros((2, 30, 8), dtype=np.float32), w_in, w_rec, PARAMS, record=True)
    assert not run.features().any()
    assert run.cumulative is not None and not run.cumulative.any()


def test_refractory_period_spaces_spikes_and_counts_add_up() -> None:
    w_in, w_rec = _weights()
    spikes = np.ones((3, 40, 8), dtype=np.float32)
    run = simulate(spikes, w_in, w_rec, PARAMS, record=True)
    assert run.cumulative is not None
    per_step = np.diff(run.cumulative, axis=0).transpose(0, 2, 1)  # (T, batch, N), 0/1
    assert set(np.unique(per_step).tolist()) <= {0.0, 1.0}
    # With a refractory period of 2 a neuron fires at most once in any 3 consecutive steps.
    window_sums = per_step[:-2] + per_step[1:-1] + per_step[2:]
    assert window_sums.max() <= 1
    assert per_step.any()
    np.testing.assert_array_equal(run.counts_all, per_step.sum(axis=0))
    np.testing.assert_array_equal(run.counts_recent, per_step[-8:].sum(axis=0))
    decay = np.exp(-np.arange(39, -1, -1) / 4.0)
    np.testing.assert_allclose(run.trace, np.tensordot(decay, per_step, axes=(0, 0)), rtol=1e-5)


def test_membrane_leaks_without_input() -> None:
    w_in, w_rec = _weights(radius=0.0)
    spikes = np.zeros((1, 10, 8), dtype=np.float32)
    spikes[0, 0, :] = 1.0
    run_early = simulate(spikes[:, :2], w_in, w_rec, PARAMS)
    run_late = simulate(spikes, w_in, w_rec, PARAMS)
    below = (run_early.counts_all[0] == 0) & (run_early.membrane[0] > 0)
    assert below.any()
    expected = run_early.membrane[0, below] * np.exp(-8 / 8.0)
    np.testing.assert_allclose(run_late.membrane[0, below], expected, rtol=1e-5)


def test_nonzero_reset_and_no_refractory_path() -> None:
    w_in, w_rec = _weights()
    params = ReservoirParams(8.0, 1.0, -0.5, 0, 4.0, 8)
    run = simulate(_spikes(4), w_in, w_rec, params, record=True)
    assert run.counts_all.sum() > 0
    assert run.cumulative is not None
    fired_last = np.diff(run.cumulative, axis=0)[-1].T > 0
    assert fired_last.any()
    np.testing.assert_array_equal(run.membrane[fired_last], -0.5)
