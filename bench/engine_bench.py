"""Engine throughput and latency benchmark; writes the "## Engine" section of docs/benchmarks.md.

Run pinned to one core:  taskset -c 0 .venv/bin/python bench/engine_bench.py --write
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread: the numbers are per core, and the platform runs engines in parallel.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import platform
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import scipy
from scipy import sparse

from benchmarks_doc import cpu_name, write_section
from qortex.engine import ArtifactError, EngineConfig, Predictor
from qortex.engine.encoding import encode
from qortex.engine.normalise import last_windows, normalise_windows

BATCHES = (1, 32, 256, 1024)
LENGTHS = (64, 512)
STAGES = ("encoding", "neuromorphic", "patterns", "quantum", "readout")
COMMAND = "taskset -c 0 .venv/bin/python bench/engine_bench.py --write"


def synthetic(n: int, length: int, seed: int) -> list[np.ndarray]:
    """Random walks with a little drift and some seasonality, like real metrics."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [
        np.cumsum(rng.standard_normal(length) + 0.02) + 3 * np.sin(2 * np.pi * t / rng.uniform(8, 40)) + 100
        for _ in range(n)
    ]


def model() -> tuple[Predictor, str]:
    """Returns the shipped default model, or one fitted on synthetic data if it is missing."""
    try:
        return Predictor.load_default(), "artifacts/default.npz (load_default)"
    except ArtifactError:
        return Predictor(EngineConfig()).fit(synthetic(16, 600, 1)), "default config fitted on synthetic walks"


def best_rate(fn: Callable[[], object], n_series: int, min_seconds: float) -> tuple[float, float]:
    """Series per second (wall clock, thread CPU time) of the best of repeated runs."""
    fn()
    best_wall = best_cpu = float("inf")
    spent = 0.0
    runs = 0
    while spent < min_seconds or runs < 3:
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
        spent += wall
        runs += 1
    return n_series / best_wall, n_series / max(best_cpu, 1e-9)


def latency(fn: Callable[[], object], n: int) -> dict[str, tuple[float, float, float, float]]:
    """min, p50, p99 and max latency in ms over n calls after a warm-up, for wall and CPU time."""
    for _ in range(50):
        fn()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(n):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    out = {}
    for name, samples in (("wall", wall), ("cpu", cpu)):
        samples.sort()
        out[name] = (samples[0], statistics.median(samples), samples[int(0.99 * (n - 1))], samples[-1])
    return out


def stage_times(p: Predictor, batch: list[np.ndarray], repeats: int = 5) -> dict[str, float]:
    """Median per-stage ms for one predict_batch call."""
    runs = [p.predict_batch(batch)[0].timings_ms for _ in range(repeats)]
    return {s: statistics.median(r[s] for r in runs) for s in STAGES}


def recurrent_backends(p: Predictor, batch: int) -> tuple[float, float]:
    """µs per recurrent product W^T @ s, dense BLAS vs scipy.sparse CSR, at a realistic firing rate."""
    cfg = p.config
    raw, used, _ = last_windows(synthetic(batch, cfg.window, 5), cfg.window)
    z, _ = normalise_windows(raw, used)
    spikes = encode(z, cfg.encoder, cfg.encoder_channels, cfg.seed)
    rate = max(float(spikes.mean()), 0.05)
    s = (np.random.default_rng(0).random((cfg.n_neurons, batch)) < rate).astype(np.float32)
    w_t = np.ascontiguousarray(p.w_rec_.T)
    csr = sparse.csr_matrix(w_t)
    out = np.empty_like(s)

    def per_call(fn: Callable[[], object]) -> float:
        fn()
        n = max(20, int(2000 / batch))
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        return (time.thread_time() - t0) / n * 1e6

    return per_call(lambda: np.matmul(w_t, s, out=out)), per_call(lambda: csr @ s)


def peak_memory(p: Predictor, batch: list[np.ndarray]) -> float:
    """Peak MiB allocated by numpy/Python during one predict_batch call (tracemalloc)."""
    tracemalloc.start()
    p.predict_batch(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def run(quick: bool) -> str:
    load_before = os.getloadavg()[0]
    p, source = model()
    min_s = 0.3 if quick else 1.5
    cfg = p.config
    lines = [
        "## Engine",
        "",
        f"Command: `{COMMAND}` (pins one core; the script sets OMP_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1).",
        "",
        f"Machine: {cpu_name()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, {os.cpu_count()} logical CPUs visible, "
        f"affinity {sorted(os.sched_getaffinity(0))}. Model: {source}; window {cfg.window}, "
        f"encoder {cfg.encoder}, {cfg.n_neurons} neurons, {cfg.n_qubits} qubits x {cfg.n_quantum_layers} "
        f"layers, {len(p.layout.names)} readout features.",
        "",
        "Wall-clock numbers are what a caller saw on this machine; thread CPU time (`time.thread_time`) "
        "counts only the time this thread ran, so it is what a dedicated core would give when other "
        "processes share the machine (see the load average below).",
        "",
        "### Throughput (series/s, best of repeated runs)",
        "",
        "| series length | batch | predict_proba wall | predict_proba CPU | predict_batch wall | predict_batch CPU |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    target = (0.0, 0.0)
    for length in LENGTHS:
        data = synthetic(max(BATCHES), length, 2)
        for b in BATCHES:
            batch = data[:b]
            proba = best_rate(lambda batch=batch: p.predict_proba(batch), b, min_s)
            full = best_rate(lambda batch=batch: p.predict_batch(batch), b, min_s)
            if length == 64 and b == 1024:
                target = proba
            lines.append(f"| {length} | {b} | {proba[0]:,.0f} | {proba[1]:,.0f} | {full[0]:,.0f} | {full[1]:,.0f} |")
            print(f"length {length} batch {b}: proba {proba}  batch {full}", flush=True)
    one = synthetic(1, 64, 3)
    n_calls = 300 if quick else 3000
    lat_p = latency(lambda: p.predict_proba(one), n_calls)
    lat_b = latency(lambda: p.predict_batch(one), n_calls)
    lines += [
        "",
        f"### Single-series latency (length 64, {n_calls:,} calls)",
        "",
        "| call | clock | min ms | p50 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for call, lat in (("predict_proba", lat_p), ("predict_batch", lat_b)):
        for clock in ("wall", "cpu"):
            lo, mid, hi, top = lat[clock]
            lines.append(f"| {call} | {clock} | {lo:.3f} | {mid:.3f} | {hi:.3f} | {top:.3f} |")
    rounds = [latency(lambda: p.predict_proba(one), n_calls // 3) for _ in range(3)]
    lines += [
        "",
        "The tail of a 1 ms call is sensitive to other processes on the machine: three further rounds "
        f"of {n_calls // 3:,} predict_proba calls gave p99 "
        + ", ".join(f"{r['wall'][2]:.3f} ms wall / {r['cpu'][2]:.3f} ms CPU" for r in rounds)
        + ".",
    ]
    lines += [
        "",
        "### Per-stage wall time of one predict_batch call (ms, median of 5, length 64, from timings_ms)",
        "",
        "| batch | " + " | ".join(STAGES) + " |",
        "|---:|" + "---:|" * len(STAGES),
    ]
    data = synthetic(1024, 64, 4)
    for b in BATCHES:
        st = stage_times(p, data[:b])
        lines.append(f"| {b} | " + " | ".join(f"{st[s]:.3f}" for s in STAGES) + " |")
    lines += [
        "",
        "### Recurrent product: dense BLAS vs scipy.sparse CSR (µs of thread CPU time per step)",
        "",
        "| batch | dense | sparse |",
        "|---:|---:|---:|",
    ]
    for b in BATCHES:
        dense_us, sparse_us = recurrent_backends(p, b)
        lines.append(f"| {b} | {dense_us:.1f} | {sparse_us:.1f} |")
    peak = peak_memory(p, synthetic(1024, 512, 6))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_after = os.getloadavg()[0]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    p99_wall, p99_cpu = lat_p["wall"][2], lat_p["cpu"][2]
    lines += [
        "",
        "The engine uses dense BLAS below batch 64 and CSR from 64 up "
        "(`qortex.engine.reservoir.SPARSE_MIN_BATCH`); both give bit-identical spikes because the "
        "weights sit on an exact dyadic grid.",
        "",
        "What makes it fast: float32 throughout the spiking stages, reservoir state kept neuron-major "
        "(N, batch) so each of the window's time steps is one CSR product plus a handful of in-place "
        "ufuncs over the whole batch, spike totals and traces computed after the loop as one product "
        "over the spike history, the first circuit layer built directly as a product state and the CNOT "
        "ring applied as one precomputed gather, and batches processed in chunks of at most 1,024 series "
        "(fewer where a row needs more memory) so the spike history stays in a few tens of MiB. "
        "predict_batch costs more than predict_proba because "
        "it also records per-step spike totals for the patterns' spatial signatures and builds result "
        "objects.",
        "",
        f"Peak memory: {peak:.1f} MiB traced by tracemalloc during one predict_batch of 1,024 series of "
        f"length 512; process max RSS over the whole benchmark {rss:.0f} MiB.",
        "",
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 1-minute load average {load_before:.1f} "
        f"before and {load_after:.1f} after (other work shares the machine when it is above ~1).",
        "",
        f"Targets: >= 10,000 series/s at batch 1,024, length 64 (predict_proba): {target[0]:,.0f}/s wall "
        f"({verdict(target[0] >= 10_000)}), {target[1]:,.0f}/s CPU ({verdict(target[1] >= 10_000)}). "
        f"Single-series p99 < 2 ms (predict_proba): {p99_wall:.3f} ms wall ({verdict(p99_wall < 2.0)}), "
        f"{p99_cpu:.3f} ms CPU ({verdict(p99_cpu < 2.0)}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    args = parser.parse_args()
    section = run(args.quick)
    print(section)
    if args.write:
        write_section("## Engine", section)


if __name__ == "__main__":
    main()
