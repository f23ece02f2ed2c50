"""The state-vector simulator against analytic results and a dense np.kron reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qortex.engine.quantum import (
    QuantumFeatureMap,
    apply_cnot,
    apply_cz,
    apply_single_qubit_gate,
    cnot_ring_permutation,
    expectations,
    product_state,
    ry,
    ry_rz,
    rz,
    zero_state,
)

H = np.array([[1, 1], [1, -1]], dtype=np.complex128) / np.sqrt(2)
X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
I2 = np.eye(2, dtype=np.complex128)


def test_ry_on_zero_gives_cos_theta() -> None:
    thetas = np.linspace(-np.pi, np.pi, 9)
    state = apply_single_qubit_gate(zero_state(9, 1, np.complex128), ry(thetas), 0)
    z, zz = expectations(state)
    np.testing.assert_allclose(z[:, 0], np.cos(thetas), atol=1e-6)
    assert zz.shape == (9, 0)


def test_bell_pair_is_perfectly_correlated_with_zero_magnetisation() -> None:
    state = apply_cnot(apply_single_qubit_gate(zero_state(1, 2), H, 0), 0, 1)
    z, zz = expectations(state)
    np.testing.assert_allclose(z[0], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(zz[0], [1.0], atol=1e-6)
    np.testing.assert_allclose(np.abs(state[0]) ** 2, [0.5, 0, 0, 0.5], atol=1e-6)


def test_cz_phases_only_the_11_amplitude() -> None:
    plus = apply_single_qubit_gate(apply_single_qubit_gate(zero_state(1, 2, np.complex128), H, 0), H, 1)
    out = apply_cz(plus, 0, 1)
    np.testing.assert_allclose(out[0], [0.5, 0.5, 0.5, -0.5])


def test_qubit_zero_is_the_most_significant_bit() -> None:
    state = apply_single_qubit_gate(zero_state(1, 3, np.complex128), X, 0)
    assert np.argmax(np.abs(state[0])) == 0b100
    z, _ = expectations(state)
    np.testing.assert_allclose(z[0], [-1, 1, 1])


def test_cnot_with_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        apply_cnot(zero_state(1, 2), 1, 1)


def _kron_gate(gate: np.ndarray, qubit: int, n: int) -> np.ndarray:
    out = np.array([[1.0 + 0j]])
    for q in range(n):
        out = np.kron(out, gate if q == qubit else I2)
    return out


def _kron_cnot(control: int, target: int, n: int) -> np.ndarray:
    p0 = np.array([[1, 0], [0, 0]], dtype=np.complex128)
    p1 = np.array([[0, 0], [0, 1]], dtype=np.complex128)
    a = np.array([[1.0 + 0j]])
    b = np.array([[1.0 + 0j]])
    for q in range(n):
        a = np.kron(a, p0 if q == control else I2)
        b = np.kron(b, p1 if q == control else (X if q == target else I2))
    return a + b


def _kron_cz(q1: int, q2: int, n: int) -> np.ndarray:
    idx = np.arange(2**n)
    both = ((idx >> (n - 1 - q1)) & (idx >> (n - 1 - q2)) & 1) == 1
    return np.diag(np.where(both, -1.0, 1.0)).astype(np.complex128)


op_st = st.one_of(
    st.tuples(st.just("u"), st.integers(0, 3), st.floats(-np.pi, np.pi), st.floats(-np.pi, np.pi)),
    st.tuples(st.just("cnot"), st.integers(0, 3), st.integers(0, 3), st.just(0.0)),
    st.tuples(st.just("cz"), st.integers(0, 3), st.integers(0, 3), st.just(0.0)),
)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.lists(op_st, min_size=1, max_size=12))
def test_random_circuits_match_the_dense_kron_reference(n: int, ops: list[tuple[str, int, float, float]]) -> None:
    state = zero_state(1, n, np.complex128)
    dense = np.zeros(2**n, dtype=np.complex128)
    dense[0] = 1.0
    for kind, a, b, c in ops:
        if kind == "u":
            q = a % n
            gate = ry_rz(np.array(b), np.array(c))
            state = apply_single_qubit_gate(state, gate, q)
            dense = _kron_gate(gate, q, n) @ dense
        else:
            q1, q2 = a % n, int(b) % n
            if q1 == q2:
                continue
            if kind == "cnot":
                state = apply_cnot(state, q1, q2)
                dense = _kron_cnot(q1, q2, n) @ dense
            else:
                state = apply_cz(state, q1, q2)
                dense = _kron_cz(q1, q2, n) @ dense
    np.testing.assert_allclose(state[0], dense, atol=1e-10)
    assert np.sum(np.abs(state[0]) ** 2) == pytest.approx(1.0, abs=1e-10)
    z_ref = np.array([np.real(dense.conj() @ _kron_gate(np.diag([1.0, -1.0]), q, n) @ dense) for q in range(n)])
    np.testing.assert_allclose(expectations(state)[0][0], z_ref, atol=1e-5)


def test_ry_rz_is_rz_after_ry() -> None:
    theta, phi = np.array([0.3, -2.0]), np.array([1.1, 0.4])
    np.testing.assert_allclose(ry_rz(theta, phi), rz(phi) @ ry(theta), atol=1e-12)


def test_rz_is_diagonal_and_unitary() -> None:
    gate = rz(np.array(0.7))
    assert gate[0, 1] == 0 and gate[1, 0] == 0
    np.testing.assert_allclose(gate @ gate.conj().T, I2, atol=1e-12)


def test_product_state_equals_sequential_gates_on_zero() -> None:
    rng = np.random.default_rng(0)
    gates = ry_rz(rng.uniform(-3, 3, (2, 5)), rng.uniform(-3, 3, (2, 5)))
    direct = product_state(gates)
    state = zero_state(2, 5, np.complex128)
    for q in range(5):
        state = apply_single_qubit_gate(state, gates[:, q], q)
    np.testing.assert_allclose(direct, state, atol=1e-12)


def test_cnot_ring_gather_equals_the_gates_in_order() -> None:
    rng = np.random.default_rng(1)
    state = rng.standard_normal((2, 2**4)) + 1j * rng.standard_normal((2, 2**4))
    expected = state
    for q in range(4):
        expected = apply_cnot(expected, q, (q + 1) % 4)
    np.testing.assert_array_equal(state[:, cnot_ring_permutation(4)], expected)


def test_feature_map_is_seeded_bounded_and_row_independent() -> None:
    fmap = QuantumFeatureMap.create(n_inputs=20, n_qubits=6, n_layers=3, seed=5)
    again = QuantumFeatureMap.create(n_inputs=20, n_qubits=6, n_layers=3, seed=5)
    np.testing.assert_array_equal(fmap.projection, again.projection)
    x = np.random.default_rng(2).standard_normal((7, 20)).astype(np.float32)
    z, zz = fmap.run(x)
    assert z.shape == (7, 6) and zz.shape == (7, 15)
    assert np.all(np.abs(z) <= 1 + 1e-5) and np.all(np.abs(zz) <= 1 + 1e-5)
    z1, zz1 = fmap.run(x[3:4])
    np.testing.assert_allclose(z1[0], z[3], atol=1e-5)
    np.testing.assert_allclose(zz1[0], zz[3], atol=1e-5)
    assert not np.allclose(z[0], z[1])
