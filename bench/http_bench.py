"""HTTP API benchmark: a real `qortex serve` on one core, `wrk` on another; writes "## HTTP API" of docs/benchmarks.md.

Run:  .venv/bin/python bench/http_bench.py --write      (needs `taskset`, `wrk` and two CPUs)

The server (embedded SQLite in a temporary data directory, default settings) runs under `taskset -c 0`;
the load generator is `wrk` (C, one thread, closed loop over N keep-alive connections) under
`taskset -c 1`, so the client's own cost never competes with the server. The floor is a bare FastAPI
app answering a constant to the same POST, served by the same uvicorn settings on the same core: the
ratio to it shows what Qortex's own work costs on top of the HTTP stack.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks_doc import DOC, cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## HTTP API"
COMMAND = ".venv/bin/python bench/http_bench.py --write"
SERVER_CPU, CLIENT_CPU = 0, 1
CONCURRENCIES = (8, 32, 128)
BATCH_ITEMS = 1000
BATCH_CONCURRENCY = 2
BATCH_MIN_SECONDS = 30.0
SERIES_LENGTH = 64
FIRST_KEY = re.compile(r"\bqx_[0-9a-f]{32}_[A-Za-z0-9_-]+")
READY_TIMEOUT_SECONDS = 60.0

# One BLAS/OpenMP thread in the server: it has one core, and extra threads would only contend for it.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{auth}
wrk.body = [==[{body}]==]
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {{}} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local parts = {{}}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do table.insert(parts, string.format('"%d": %d', status, n)) end
  end
  io.write(string.format(
    'WRK_RESULT {{"requests": %d, "duration_us": %d, "p50_us": %.0f, "p95_us": %.0f, "p99_us": %.0f, ' ..
    '"max_us": %.0f, "socket_errors": %d, "timeouts": %d, "statuses": {{%s}}}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout, table.concat(parts, ", ")))
end
"""


def floor_app() -> Any:
    """The floor: FastAPI answering a constant, reading nothing of the request (served with --factory)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/floor")
    async def constant() -> dict[str, str]:
        return {"status": "ok"}

    return app


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Run:
    target: str
    concurrency: int
    items_per_request: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests_per_cpu_s: float
    cpu_share: float
    failures: dict[str, int]

    @property
    def errors(self) -> str:
        return ", ".join(f"{n:,} x {what}" for what, n in sorted(self.failures.items())) or "0"

    @property
    def predictions_per_s(self) -> float:
        return self.requests_per_s * self.items_per_request


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], *, env: dict[str, str], ready_path: str, port: int, log_path: Path) -> Server:
    """Starts a server pinned to SERVER_CPU and waits until `ready_path` answers 200."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), *command], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = Server(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(server.base_url + ready_path, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{command[0]} was not ready within {READY_TIMEOUT_SECONDS} s:\n{log_path.read_text()}")


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QORTEX_")}
    env.update(ONE_THREAD, COLUMNS="200", **extra)
    return env


def start_qortex(workdir: Path) -> tuple[Server, str]:
    port = free_port()
    # Per-tenant rate limits off: this measures the platform's capacity, not a plan's quota (the largest
    # plan allows 100 requests/s).
    env = server_env(
        QORTEX_DATA_DIR=str(workdir / "data"),
        QORTEX_HOST="127.0.0.1",
        QORTEX_PORT=str(port),
        QORTEX_LIMITS_ENABLED="false",
    )
    qortex = str(Path(sys.executable).with_name("qortex"))
    server = start([qortex, "serve"], env=env, ready_path="/health/ready", port=port, log_path=workdir / "qortex.log")
    keys = FIRST_KEY.findall(server.log_path.read_text())
    if len(keys) != 1:
        server.stop()
        raise RuntimeError(f"expected one printed key, found {len(keys)}:\n{server.log_path.read_text()}")
    return server, keys[0]


def start_floor(workdir: Path) -> Server:
    """The bare app under the same uvicorn settings as `qortex serve` (uvloop, httptools, log level info)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "http_bench:floor_app",
        "--factory",
        "--app-dir",
        str(ROOT / "bench"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "info",
        "--no-server-header",
        "--no-proxy-headers",
    ]
    return start(command, env=server_env(), ready_path="/docs", port=port, log_path=workdir / "floor.log")


def series(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(v), 4) for v in 100 + np.cumsum(rng.normal(size=SERIES_LENGTH))]


def single_body() -> str:
    return json.dumps({"source": "bench", "values": series(0)})


def batch_body() -> str:
    return json.dumps({"items": [{"source": f"bench-{i}", "values": series(i)} for i in range(BATCH_ITEMS)]})


def check(base_url: str, key: str) -> None:
    """One real request of each kind before measuring: a benchmark of error responses would be worthless."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    single = httpx.post(f"{base_url}/v1/predictions", content=single_body(), headers=headers, timeout=30)
    if single.status_code != 201:
        raise RuntimeError(f"single prediction answered {single.status_code}: {single.text[:500]}")
    batch = httpx.post(f"{base_url}/v1/predictions/batch", content=batch_body(), headers=headers, timeout=60)
    if batch.status_code != 200 or batch.json()["succeeded"] != BATCH_ITEMS:
        raise RuntimeError(f"batch answered {batch.status_code}: {batch.text[:500]}")


def wrk(url: str, *, body: str, key: str | None, concurrency: int, seconds: float, workdir: Path) -> dict[str, Any]:
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(auth=auth, body=body))
    command = [
        "taskset",
        "-c",
        str(CLIENT_CPU),
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
    ]
    output = subprocess.run(
        [*command, "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
    return result


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    target: str,
    server: Server,
    path: str,
    *,
    body: str,
    key: str | None,
    concurrency: int,
    items: int,
    seconds: float,
    workdir: Path,
) -> Run:
    url = server.base_url + path
    wrk(url, body=body, key=key, concurrency=concurrency, seconds=min(3.0, seconds), workdir=workdir)  # warm-up
    cpu_before = cpu_seconds(server.process.pid)
    r = wrk(url, body=body, key=key, concurrency=concurrency, seconds=seconds, workdir=workdir)
    cpu_used = cpu_seconds(server.process.pid) - cpu_before
    statuses = {int(code): n for code, n in r["statuses"].items()}
    failures = {str(code): n for code, n in statuses.items() if not 200 <= code < 300}
    for kind in ("socket_errors", "timeouts"):
        if r[kind]:
            failures[kind.replace("_", " ")] = r[kind]
    succeeded = sum(n for code, n in statuses.items() if 200 <= code < 300)
    wall_seconds = r["duration_us"] / 1e6
    run = Run(
        target=target,
        concurrency=concurrency,
        items_per_request=items,
        # Only successful answers count: a fast stream of errors is not throughput.
        requests_per_s=succeeded / wall_seconds,
        # What one uncontended core would sustain if the server stayed CPU-bound: answers per CPU-second used.
        requests_per_cpu_s=succeeded / cpu_used if cpu_used > 0 else 0.0,
        cpu_share=cpu_used / wall_seconds,
        p50_ms=r["p50_us"] / 1000,
        p95_ms=r["p95_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        failures=failures,
    )
    print(
        f"{target:<28} c={concurrency:<4} {run.requests_per_s:>9,.0f} req/s {run.predictions_per_s:>9,.0f} pred/s "
        f"p50 {run.p50_ms:7.1f} p95 {run.p95_ms:7.1f} p99 {run.p99_ms:7.1f} ms  "
        f"{run.requests_per_cpu_s:>9,.1f} req/CPU-s  CPU {100 * run.cpu_share:3.0f}%  errors {run.errors}",
        flush=True,
    )
    return run


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def render(runs: list[Run], *, seconds: float, load_before: float, load_after: float) -> str:
    floor = {r.concurrency: r for r in runs if r.target == "floor"}
    single = {r.concurrency: r for r in runs if r.target == "single"}
    batch = next(r for r in runs if r.target == "batch")
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}`",
        "",
        f"Setup: `qortex serve` with default settings except `QORTEX_LIMITS_ENABLED=false` (per-tenant rate "
        "limits would otherwise answer 429 long before capacity), embedded SQLite in a fresh temporary data "
        f"directory (WAL, synchronous=FULL), log level info, pinned with `taskset -c {SERVER_CPU}`; load from "
        f"`wrk` {wrk_version()} (one thread, closed loop, keep-alive) pinned with `taskset -c {CLIENT_CPU}`; "
        f"{seconds:g} s per point ({max(seconds, BATCH_MIN_SECONDS):g} s for batches) after a warm-up. "
        f"Each single request posts one series of {SERIES_LENGTH} values; "
        f"each batch request posts {BATCH_ITEMS} items. The floor is a bare FastAPI app answering a constant "
        "to the same POST body, served by the same uvicorn (uvloop, httptools, log level info) on the same core.",
        "",
        f"Code: {code_version()}. Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}. "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after "
        "(other work shares this machine when it is above ~1, and then every number below is pessimistic).",
        "",
        "| endpoint | concurrency | requests/s (2xx) | predictions/s | p50 ms | p95 ms | p99 ms | failures "
        "| server CPU | predictions per CPU-s | % of floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        endpoint = {
            "floor": "floor (bare FastAPI)",
            "single": "POST /v1/predictions",
            "batch": f"POST /v1/predictions/batch ({BATCH_ITEMS} items)",
        }[run.target]
        ratio = (
            f"{100 * run.requests_per_s / floor[run.concurrency].requests_per_s:.1f}%"
            if run.target == "single"
            else "-"
        )
        predictions = "-" if run.target == "floor" else number(run.predictions_per_s)
        per_cpu = (
            f"({number(run.requests_per_cpu_s)} req)"
            if run.target == "floor"
            else number(run.requests_per_cpu_s * run.items_per_request)
        )
        lines.append(
            f"| {endpoint} | {run.concurrency} | {number(run.requests_per_s)} | {predictions} | {run.p50_ms:.1f} | "
            f"{run.p95_ms:.1f} | {run.p99_ms:.1f} | {run.errors} | {100 * run.cpu_share:.0f}% | {per_cpu} | {ratio} |"
        )
    at32 = single[32]
    cost_ratio = floor[32].requests_per_cpu_s / at32.requests_per_cpu_s if at32.requests_per_cpu_s else float("inf")
    single_met = at32.predictions_per_s >= 1000 and at32.p95_ms < 50 and at32.p99_ms < 100
    batch_met = batch.predictions_per_s >= 10_000
    lines += [
        "",
        "Server CPU is the CPU time the server process used (all its threads) over the wall time of the run: "
        "below 100% its core was shared with other work, or the server was waiting (for the SQLite write "
        "lock, an fsync, the engine thread). Predictions per CPU-second estimate what one uncontended core "
        "would sustain while the server stays CPU-bound; the wall-clock columns are what was delivered here. "
        f"At concurrency 32 a single prediction costs {cost_ratio:.0f} times the CPU of the floor's constant answer.",
        "",
        f"Targets: >= 1,000 single predictions/s at concurrency 32 with p95 < 50 ms and p99 < 100 ms: "
        f"{number(at32.predictions_per_s)}/s, p95 {at32.p95_ms:.1f} ms, p99 {at32.p99_ms:.1f} ms, "
        f"{'met' if single_met else 'MISSED'} ({number(at32.requests_per_cpu_s)} per CPU-second). "
        ">= 10,000 predictions/s through the batch endpoint: "
        f"{number(batch.predictions_per_s)}/s, {'met' if batch_met else 'MISSED'} "
        f"({number(batch.requests_per_cpu_s * batch.items_per_request)} per CPU-second).",
        "",
        f"Run at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
    ]
    return "\n".join(lines)


def code_version() -> str:
    """The commit measured, and whether src/ differed from it (uncommitted work is measured too)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    commit = head.stdout.strip() or "unknown"
    return f"commit {commit}" + (" plus uncommitted changes in src/" if dirty.stdout.strip() else "")


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else ""


def preflight() -> None:
    missing = [tool for tool in ("taskset", "wrk") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"error: {' and '.join(missing)} not found; install them (Debian/Ubuntu: apt-get install wrk util-linux)"
        )
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        sys.exit(f"error: CPUs {SERVER_CPU} and {CLIENT_CPU} must both be available to pin server and client apart")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point (default 10)")
    parser.add_argument("--write", action="store_true", help="write the results into docs/benchmarks.md")
    args = parser.parse_args()
    preflight()
    load_before = os.getloadavg()[0]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="qortex-http-bench-") as tmp:
        workdir = Path(tmp)
        floor = start_floor(workdir)
        try:
            for concurrency in CONCURRENCIES:
                runs.append(
                    measure(
                        "floor",
                        floor,
                        "/floor",
                        body=single_body(),
                        key=None,
                        concurrency=concurrency,
                        items=1,
                        seconds=args.seconds,
                        workdir=workdir,
                    )
                )
        finally:
            floor.stop()
        server, key = start_qortex(workdir)
        try:
            check(server.base_url, key)
            for concurrency in CONCURRENCIES:
                runs.append(
                    measure(
                        "single",
                        server,
                        "/v1/predictions",
                        body=single_body(),
                        key=key,
                        concurrency=concurrency,
                        items=1,
                        seconds=args.seconds,
                        workdir=workdir,
                    )
                )
            runs.append(
                measure(
                    "batch",
                    server,
                    "/v1/predictions/batch",
                    body=batch_body(),
                    key=key,
                    concurrency=BATCH_CONCURRENCY,
                    items=BATCH_ITEMS,
                    # One batch takes seconds on a busy machine: measure long enough to see several.
                    seconds=max(args.seconds, BATCH_MIN_SECONDS),
                    workdir=workdir,
                )
            )
        finally:
            server.stop()
    runs.sort(key=lambda r: ({"floor": 0, "single": 1, "batch": 2}[r.target], r.concurrency))
    section = render(runs, seconds=args.seconds, load_before=load_before, load_after=os.getloadavg()[0])
    print("\n" + section)
    if args.write:
        write_section(SECTION, section)
        print(f"\nwrote {SECTION!r} of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
