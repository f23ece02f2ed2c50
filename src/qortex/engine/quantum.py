"""Exact state-vector simulation of small parameterised circuits, batched over series.

Qubit 0 is the most significant bit of a basis index. States are (batch, 2**n) complex arrays.
The feature map angle-encodes a fixed seeded projection of its input (RY then RZ per qubit),
entangles with a CNOT ring, repeats for a few layers with seeded offsets, and returns <Z_i> and
<Z_i Z_j>.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from qortex.engine.rowwise import row_products

__all__ = [
    "QuantumFeatureMap",
    "apply_cnot",
    "apply_cz",
    "apply_single_qubit_gate",
    "cnot_ring_permutation",
    "expectations",
    "product_state",
    "ry",
    "ry_rz",
    "rz",
    "zero_state",
]

C = npt.NDArray[np.complexfloating]
F = npt.NDArray[np.floating]


def zero_state(batch: int, n_qubits: int, dtype: type = np.complex64) -> C:
    """Returns |0...0> for each batch element."""
    state = np.zeros((batch, 2**n_qubits), dtype=dtype)
    state[:, 0] = 1.0
    return state


def ry(theta: F) -> C:
    """Returns RY(theta) matrices, shape theta.shape + (2, 2)."""
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2).astype(np.complex128)


def rz(phi: F) -> C:
    """Returns RZ(phi) = diag(exp(-i phi/2), exp(i phi/2)), shape phi.shape + (2, 2)."""
    e = np.exp(-0.5j * np.asarray(phi, dtype=np.float64))
    zero = np.zeros_like(e)
    return np.stack([np.stack([e, zero], -1), np.stack([zero, np.conj(e)], -1)], -2)


def ry_rz(theta: F, phi: F) -> C:
    """Returns RZ(phi) @ RY(theta): the encoding gate, RY applied first, shape theta.shape + (2, 2)."""
    theta = np.asarray(theta, dtype=np.float64)
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    e = np.exp(-0.5j * np.asarray(phi, dtype=np.float64))
    out = np.empty((*theta.shape, 2, 2), dtype=np.complex128)
    out[..., 0, 0] = e * c
    out[..., 0, 1] = -e * s
    out[..., 1, 0] = np.conj(e) * s
    out[..., 1, 1] = np.conj(e) * c
    return out


def apply_single_qubit_gate(state: C, gate: C, qubit: int) -> C:
    """Applies a 2x2 gate (shared, or one per batch element with shape (batch, 2, 2)) to `qubit`."""
    batch, dim = state.shape
    n = dim.bit_length() - 1
    psi = state.reshape(batch, 2**qubit, 2, 2 ** (n - qubit - 1))
    g = np.asarray(gate, dtype=state.dtype)
    if g.ndim == 2:
        g = np.broadcast_to(g, (batch, 2, 2))
    g = g[:, :, :, None, None]  # (batch, 2, 2, 1, 1) against (batch, hi, lo)
    a0 = psi[:, :, 0, :]
    a1 = psi[:, :, 1, :]
    out = np.empty_like(psi)
    out[:, :, 0, :] = g[:, 0, 0] * a0 + g[:, 0, 1] * a1
    out[:, :, 1, :] = g[:, 1, 0] * a0 + g[:, 1, 1] * a1
    return out.reshape(batch, dim)


@lru_cache(maxsize=256)
def _cnot_permutation(n_qubits: int, control: int, target: int) -> npt.NDArray[np.intp]:
    idx = np.arange(2**n_qubits)
    cbit = 1 << (n_qubits - 1 - control)
    tbit = 1 << (n_qubits - 1 - target)
    perm = np.where(idx & cbit, idx ^ tbit, idx)
    perm.setflags(write=False)  # cached: shared by every caller
    return perm


def apply_cnot(state: C, control: int, target: int) -> C:
    """Applies CNOT(control -> target): a permutation of basis amplitudes."""
    if control == target:
        raise ValueError("control and target must differ")
    n = state.shape[1].bit_length() - 1
    return state[:, _cnot_permutation(n, control, target)]


def apply_cz(state: C, a: int, b: int) -> C:
    """Applies CZ(a, b): flips the sign of amplitudes where both qubits are 1."""
    n = state.shape[1].bit_length() - 1
    idx = np.arange(2**n)
    both = (idx >> (n - 1 - a)) & (idx >> (n - 1 - b)) & 1
    return state * np.where(both == 1, -1.0, 1.0).astype(state.real.dtype)


@lru_cache(maxsize=16)
def cnot_ring_permutation(n_qubits: int) -> npt.NDArray[np.intp]:
    """Returns one gather index equal to CNOT(0,1), CNOT(1,2), ..., CNOT(n-1,0) in order."""
    perm = np.arange(2**n_qubits)
    for q in range(n_qubits):
        # Applying CNOT after `perm`: new[i] = old[perm[p[i]]] with p the CNOT's own gather.
        perm = perm[_cnot_permutation(n_qubits, q, (q + 1) % n_qubits)]
    perm.setflags(write=False)  # cached: shared by every caller
    return perm


@lru_cache(maxsize=16)
def _z_signs(n_qubits: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    idx = np.arange(2**n_qubits)
    bits = (idx[:, None] >> (n_qubits - 1 - np.arange(n_qubits))[None, :]) & 1
    z = (1 - 2 * bits).astype(np.float32)  # (2**n, n)
    i, j = np.triu_indices(n_qubits, k=1)
    zz = z[:, i] * z[:, j]
    z.setflags(write=False)  # cached: shared by every caller
    zz.setflags(write=False)
    return z, zz


def expectations(state: C) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Returns <Z_i> (batch, n) and <Z_i Z_j> for i < j in row-major order (batch, n(n-1)/2)."""
    n = state.shape[1].bit_length() - 1
    probs = (state.real**2 + state.imag**2).astype(np.float32)
    z, zz = _z_signs(n)
    return row_products(probs, z), row_products(probs, zz)


def product_state(gates: C) -> C:
    """Returns the state of per-qubit gates (batch, n, 2, 2) applied to |0...0>, built directly."""
    columns = gates[:, :, :, 0]  # gate @ |0> is the first column, (batch, n, 2)
    state = columns[:, 0, :]
    for q in range(1, gates.shape[1]):
        state = (state[:, :, None] * columns[:, q, None, :]).reshape(state.shape[0], -1)
    return state


@dataclass(frozen=True)
class QuantumFeatureMap:
    """A seeded circuit feature map; `projection` maps standardised inputs to 2 angles per qubit."""

    n_qubits: int
    n_layers: int
    projection: npt.NDArray[np.float32]  # (n_inputs, 2 n_qubits)
    offsets: npt.NDArray[np.float32]  # (n_layers, 2, n_qubits): per-layer RY and RZ offsets

    @classmethod
    def create(cls, *, n_inputs: int, n_qubits: int, n_layers: int, seed: int) -> QuantumFeatureMap:
        """Returns a feature map with a seeded Gaussian projection and seeded layer offsets."""
        rng = np.random.default_rng([seed, 0x0B17])
        projection = rng.standard_normal((n_inputs, 2 * n_qubits)) / np.sqrt(max(n_inputs, 1))
        offsets = rng.uniform(-np.pi, np.pi, size=(n_layers, 2, n_qubits))
        offsets[0] = 0.0
        return cls(n_qubits, n_layers, projection.astype(np.float32), offsets.astype(np.float32))

    def angles(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Returns encoding angles (batch, 2, n_qubits) in (-pi, pi) for standardised inputs."""
        u = np.tanh(row_products(inputs, self.projection)) * np.float32(np.pi)
        return np.asarray(u.reshape(-1, 2, self.n_qubits), dtype=np.float32)

    def run(self, inputs: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Returns (<Z_i>, <Z_i Z_j>) of the circuit for each row of `inputs`."""
        ang = self.angles(inputs)
        ring = cnot_ring_permutation(self.n_qubits)
        # Layer 0 acts on |0...0>, so its state is a product state built without gate sweeps.
        state = product_state(ry_rz(ang[:, 0], ang[:, 1]).astype(np.complex64))[:, ring]
        for layer in range(1, self.n_layers):
            gates = ry_rz(ang[:, 0] + self.offsets[layer, 0], ang[:, 1] + self.offsets[layer, 1])
            gates = gates.astype(np.complex64)
            for q in range(self.n_qubits):
                state = apply_single_qubit_gate(state, gates[:, q], q)
            state = state[:, ring]
        return expectations(state)
