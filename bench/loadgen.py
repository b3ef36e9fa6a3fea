"""The load generator: an aiohttp client in its own process, POSTing one body at a fixed concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import socket
import ssl
import time
import traceback
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

__all__ = [
    "LoadFailure",
    "LoadGenerator",
    "LoadResult",
    "LoadSpec",
    "machine_cpu_seconds",
    "percentile",
    "probe_tls",
    "process_cpu_seconds",
    "serve_commands",
]

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One run: `warmup` requests on the same keep-alive connections, then `requests` measured ones."""

    url: str
    body: bytes
    concurrency: int
    requests: int
    warmup: int
    max_seconds: float  # the measured phase stops here even if `requests` are not all sent
    ca_file: str  # the client verifies the server against this CA (and its IP SAN)
    server_pid: int | None = None  # whose CPU time is read from /proc around the measured phase
    request_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one run measured. Latency is client-side: from sending the request to the last body byte."""

    requests: int  # measured requests answered with HTTP 200
    errors: int  # measured requests that failed: transport error or a status other than 200
    elapsed_s: float  # the measured phase, first send to last answer
    capped: bool  # the phase hit max_seconds before sending every request
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    server_cpu_s: float | None  # user+system CPU of the server process during the measured phase
    client_cpu_s: float  # this process's CPU during the measured phase
    machine_cpu_s: float | None  # CPU busy on the whole machine (steal included) during the measured phase
    first_status: int  # the first warm-up answer, for the caller to check it is the expected one
    first_body: bytes
    tls: str  # negotiated protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    error_sample: str | None = None

    @property
    def throughput(self) -> float:
        """Answered requests per second of the measured phase."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """The load generator could not run the spec: the child's traceback."""

    message: str


def finish_report(report: dict[str, Any], out: Path, started: float) -> None:
    """Every benchmark's last step: the load at the end and the duration into `report`, written as JSON to `out`."""
    root = Path(__file__).resolve().parents[1]
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    report["duration_s"] = round(time.monotonic() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    report["written_to"] = str(out.relative_to(root) if out.is_relative_to(root) else out)
    out.write_text(json.dumps(report, indent=2) + "\n")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending sequence; 0.0 when it is empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far (Linux /proc), None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces; it ends at ')'
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime and stime: fields 14 and 15


def machine_cpu_seconds() -> float | None:
    """CPU seconds the whole machine was busy so far, time stolen by the hypervisor included (Linux /proc)."""
    try:
        with open("/proc/stat", "rb") as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != b"cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


@dataclass
class _Tally:
    latencies_ns: list[int]
    errors: int = 0
    error_sample: str | None = None
    first: tuple[int, bytes] | None = None


async def _drive(session: aiohttp.ClientSession, spec: LoadSpec, count: int, deadline: float, tally: _Tally) -> bool:
    """Send `count` requests from `spec.concurrency` workers; True if the deadline stopped them first."""
    sent = 0
    capped = False

    async def worker() -> None:
        nonlocal sent, capped
        while sent < count:
            if time.perf_counter() >= deadline:
                capped = True
                return
            sent += 1
            started = time.perf_counter_ns()
            try:
                async with session.post(spec.url, data=spec.body, headers=_HEADERS) as resp:
                    payload = await resp.read()
                    status = resp.status
                    if tally.first is None:
                        tally.first = (status, payload)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                tally.errors += 1
                tally.error_sample = tally.error_sample or f"{type(exc).__name__}: {exc}"
                continue
            if status != 200:
                tally.errors += 1
                tally.error_sample = tally.error_sample or f"HTTP {status}: {payload[:200]!r}"
                continue
            tally.latencies_ns.append(time.perf_counter_ns() - started)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    return capped


def probe_tls(url: str, context: ssl.SSLContext) -> str:
    """The protocol and cipher a client with `context` negotiates with the server at `url`."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        cipher = tls.cipher()
        return f"{tls.version()} {cipher[0] if cipher else '?'}"


async def run_load(spec: LoadSpec) -> LoadResult:
    """Warm up (opens every connection, TLS handshakes included), then measure `spec.requests`."""
    context = ssl.create_default_context(cafile=spec.ca_file)
    tls = probe_tls(spec.url, context)
    connector = aiohttp.TCPConnector(limit=spec.concurrency, ssl=context)
    timeout = aiohttp.ClientTimeout(total=spec.request_timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        warm = _Tally([])
        await _drive(session, spec, max(spec.warmup, spec.concurrency), math.inf, warm)
        if warm.first is None:
            raise RuntimeError(f"no answer from {spec.url} during the warm-up: {warm.error_sample}")
        tally = _Tally([])
        server_before = process_cpu_seconds(spec.server_pid) if spec.server_pid else None
        client_before = time.process_time()
        machine_before = machine_cpu_seconds()
        started = time.perf_counter()
        capped = await _drive(session, spec, spec.requests, started + spec.max_seconds, tally)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        machine_after = machine_cpu_seconds()
        server_after = process_cpu_seconds(spec.server_pid) if spec.server_pid else None
    latencies = sorted(ns / 1e6 for ns in tally.latencies_ns)
    return LoadResult(
        requests=len(latencies),
        errors=tally.errors,
        elapsed_s=elapsed,
        capped=capped,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
        mean_ms=sum(latencies) / len(latencies) if latencies else 0.0,
        server_cpu_s=(server_after - server_before)
        if server_before is not None and server_after is not None
        else None,
        client_cpu_s=client_cpu,
        machine_cpu_s=(machine_after - machine_before)
        if machine_before is not None and machine_after is not None
        else None,
        first_status=warm.first[0],
        first_body=warm.first[1],
        tls=tls,
        error_sample=tally.error_sample or warm.error_sample,
    )


def serve_commands(conn: Connection) -> None:
    """The load-generator process: run each LoadSpec received on `conn`, answer its result; stop on None."""
    while True:
        spec = conn.recv()
        if spec is None:
            return
        try:
            conn.send(asyncio.run(run_load(spec)))
        except Exception:
            conn.send(LoadFailure(traceback.format_exc()))


class LoadGenerator:
    """A load-generator process (spawned, so it shares nothing with the caller), driven over a pipe."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=serve_commands, args=(child,), name="bench-loadgen", daemon=True)
        self._process.start()
        child.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def run(self, spec: LoadSpec) -> LoadResult:
        """Run one spec; RuntimeError with the child's traceback if it failed or did not answer in time."""
        self._conn.send(spec)
        budget = (spec.warmup + spec.requests) * spec.request_timeout / max(1, spec.concurrency)
        if not self._conn.poll(spec.max_seconds + min(budget, 120.0) + 30.0):
            raise RuntimeError(f"the load generator did not answer for {spec.url}")
        answer = self._conn.recv()
        if isinstance(answer, LoadFailure):
            raise RuntimeError(f"the load generator failed on {spec.url}:\n{answer.message}")
        assert isinstance(answer, LoadResult)
        return answer

    def close(self) -> None:
        """Ask the process to exit; terminate it if it does not within a few seconds."""
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._conn.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
