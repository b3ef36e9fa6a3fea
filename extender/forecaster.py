"""The start-time replay in a process of its own, fed by snapshots, so that it never holds the extender's
interpreter lock while kube-scheduler waits for a verb.

A thread is not enough: the replay is pure Python, and while it runs the event loop gets the lock only at
the interpreter's switch interval, so every ``/filter`` answered during a replay waited for it. Here the
controller takes its snapshot on the event loop in slices (``extender.estimates.snapshot_steps``), packs it in
a thread into plain tuples pickled in chunks of 1,000 jobs (``pack``: pickling 10,000 small objects at once costs
more than the replay saved and holds the interpreter lock all along; tuples of strings and integers pickle ten
times faster) and hands it to one worker process, which rebuilds the values, replays, and sends back the
estimates as tuples in chunks (unpickled on the loop one at a time) and the forecasts as they are. The replay is the
same function (``common.start_times.replay``), so the result is the same (``tests/unit/test_forecaster.py``).

The worker is started with ``spawn`` (a fork of a process with threads and a running loop is unsafe), once,
and warmed at start so the first forecast does not pay its imports; it dies with the extender: on Linux the
kernel sends it SIGKILL when its parent ends (``PR_SET_PDEATHSIG``), and ``close`` ends it on a clean exit.
A worker that died (killed, out of memory) is replaced on the next forecast, once. It runs at niceness +10:
on a node whose cores are busy, the kernel gives the extender (kube-scheduler's verbs) the CPU first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Final

from common.estimate_range import RangedEstimate, ranged_replay
from common.queueing import QueueItem
from common.resources import Resources
from common.start_times import Estimate, Forecast, Replay, Runtime, Waiting

if TYPE_CHECKING:
    from extender.estimates import EstimateInputs

__all__ = ["Forecaster", "pack", "run_packed", "unpack_replay"]

log = logging.getLogger("rayqueue.extender")

_PR_SET_PDEATHSIG = 1
NICE: Final = 10  # the worker's niceness above the extender's
CHUNK: Final = 1000  # waiting jobs (and estimates) per pickled chunk: each a short hold of the interpreter lock
# (ledger, running, policies, now, what the leaves learned, their runtimes), then the waiting jobs in chunks
Packed = tuple[bytes, tuple[bytes, ...]]
PackedReplay = tuple[tuple[bytes, ...], bytes]  # the estimates in chunks, then the forecasts


def pack(snap: EstimateInputs) -> Packed:
    """The snapshot pickled in chunks, its waiting jobs as tuples of strings and integers (the ledger and the
    running jobs, a few hundred objects, go as they are): one pickle of 10,000 objects would hold the
    interpreter lock, in the extender, for tens of milliseconds at once. The leaves' learned history and the
    snapshot's instant (``now_ns``, the controller's clock) go with the ledger: the range is drawn from them."""
    rows = [(i.uid, i.namespace, i.name, i.quota, i.priority, i.enqueue_ns, tuple(dict(i.request).items()),
             w.runtime.seconds, w.runtime.source, w.runtime.detail, w.preemptible)
            for w in snap.waiting for i in (w.item,)]
    head = pickle.dumps((snap.ledger, snap.running, dict(snap.policies), snap.now_ns, dict(snap.learned),
                         {leaf: tuple(v) for leaf, v in snap.runtimes.items()}))
    return head, tuple(pickle.dumps(rows[i:i + CHUNK]) for i in range(0, len(rows), CHUNK))


def _waiting(row: tuple[Any, ...]) -> Waiting:
    uid, namespace, name, quota, priority, enqueue_ns, request, seconds, source, detail, preemptible = row
    item = QueueItem(uid=uid, namespace=namespace, name=name, quota=quota, priority=priority, enqueue_ns=enqueue_ns,
                     request=Resources(dict(request)))
    return Waiting(item, Runtime(seconds, source, detail), preemptible)


def run_packed(packed: Packed) -> PackedReplay:
    """In the worker: rebuild, replay and sample the range as ``extender.estimates.compute`` does (the same call),
    and pack the result in chunks."""
    head, chunks = packed
    ledger, running, policies, now_ns, learned, runtimes = pickle.loads(head)
    waiting = [_waiting(row) for chunk in chunks for row in pickle.loads(chunk)]
    found = ranged_replay(ledger, running, waiting, now_ns, learned=learned, runtimes=runtimes, policies=policies)
    rows = [(e.uid, e.key, e.quota, e.start_ns, e.message, e.reason, e.waits_for,
             *((e.latest_ns, e.assumes) if isinstance(e, RangedEstimate) else (None, "")))
            for e in found.estimates.values()]
    return tuple(pickle.dumps(rows[i:i + CHUNK]) for i in range(0, len(rows), CHUNK)), pickle.dumps(found.forecasts)


def _estimates(chunk: bytes) -> dict[str, Estimate]:
    return {row[0]: RangedEstimate(*row) for row in pickle.loads(chunk)}


def unpack_replay(packed: PackedReplay) -> Replay:
    chunks, forecasts = packed
    estimates: dict[str, Estimate] = {}
    for chunk in chunks:
        estimates.update(_estimates(chunk))
    found: dict[str, Forecast] = pickle.loads(forecasts)
    return Replay(estimates, found)


def _die_with_parent(parent: int) -> None:
    """In the worker, first: end when the extender ends, even by SIGKILL (Linux), ignore ^C (the parent stops
    it), and run at a lower CPU priority than the extender."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)  # on a busy node the kernel gives the extender's verbs the CPU first
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the line above took effect
        os._exit(0)


def _ready() -> int:
    return os.getpid()


class Forecaster:
    """One worker process for the replay; ``compute`` is the controller's ``offload``."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_die_with_parent, initargs=(os.getpid(),))
        return self._pool

    async def warm(self) -> int:
        """Start the worker and wait until it has imported the replay; returns its pid."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), _ready)

    async def compute(self, snap: EstimateInputs) -> Replay:
        """The replay of ``snap`` (what ``extender.estimates.compute`` returns), in the worker."""
        packed = await asyncio.to_thread(pack, snap)  # not on the loop: 10,000 jobs take tens of milliseconds
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self._executor(), run_packed, packed)
        except BrokenProcessPool:
            log.warning("the forecast worker died: starting another")
            self._discard()
            out = await loop.run_in_executor(self._executor(), run_packed, packed)
        chunks, forecasts = out
        estimates: dict[str, Estimate] = {}
        for chunk in chunks:  # on the loop, a chunk at a time
            estimates.update(_estimates(chunk))
            await asyncio.sleep(0)
        found: dict[str, Forecast] = pickle.loads(forecasts)
        return Replay(estimates, found)

    def pids(self) -> list[int]:
        """The worker's pid (empty before the first forecast or warm-up)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(processes)

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                with contextlib.suppress(Exception):
                    process.kill()

    def close(self) -> None:
        """End the worker (a replay under way is abandoned: the next leader computes its own)."""
        self._discard()
