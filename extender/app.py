"""The extender process: list+watch into one Cache, the scheduler verbs and the queue controller on it,
leader election, health, readiness (leader with a synced cache) and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from common import keys
from common.clock import Clock, SystemClock
from common.pod_quota import QuotaVerdict
from common.queueing import Backoff
from common.rayjob import PodInfo
from extender.barrier import BindBarrier
from extender.cache import Cache
from extender.controller import QUEUE_UNITS, QUEUES, RAYJOBS, TREES, Controller
from extender.gang import Reservations
from extender.quota_gate import QuotaGate
from extender.scheduling import SchedulingEndpoints
from extender.settings import Settings
from extender.verbs import SchedulerView
from kubeio.client import KubeClient, Scope, load_configuration
from kubeio.events import EventRecorder
from kubeio.leader import LeaderElector
from kubeio.lifecycle import stop_on_signals
from kubeio.reflector import Reflector, tombstone

__all__ = ["Service", "run", "settle_memory"]

log = logging.getLogger("rayqueue.extender")

NODES = Scope("", "v1", "nodes", namespaced=False)
PODS = Scope("", "v1", "pods")
RAYCLUSTERS = Scope(keys.RAY_GROUP, keys.RAY_VERSION, keys.RAYCLUSTER_PLURAL)
BATCH_JOBS = Scope(keys.BATCH_GROUP, keys.BATCH_VERSION, keys.BATCH_JOB_PLURAL)
PRIORITY_CLASSES = Scope("scheduling.k8s.io", "v1", "priorityclasses", namespaced=False)


class Service:
    """Everything of one extender process except the sockets; tests drive it directly."""

    def __init__(self, settings: Settings, client: KubeClient | None, clock: Clock) -> None:
        self.settings, self.client, self.clock = settings, client, clock
        self.registry = CollectorRegistry()
        self.cache = Cache(clock, Backoff(base_seconds=settings.backoff_base, max_seconds=settings.backoff_max),
                           settings.kuberay_additions)
        self.reservations = Reservations(settings.reservation_ttl, clock)
        self.barrier = BindBarrier(settings.gang_timeout, clock)
        self.events = EventRecorder(client, "rayqueue-extender", clock) if client is not None else None
        self.scheduling = SchedulingEndpoints(self.view, self.reservations, self.barrier, client, self._emit, clock,
                                              self.registry, assume=self.cache.assume_bound,
                                              forget=self.cache.forget_assumed)
        self.controller = Controller(self.cache, client, self.events, clock, self.registry,
                                     resync_seconds=settings.resync_seconds) if client and self.events else None
        self.quota_gate = QuotaGate(self.cache, self._poke_controller)
        self.reflectors: list[Reflector] = []
        self.elector: LeaderElector | None = None

    # --- the scheduler's view of the cache ---------------------------------------------------------
    def view(self) -> SchedulerView:
        return SchedulerView(
            nodes=self.cache.nodes, reservations=self.reservations, gang_members=self.cache.gang_members,
            pod=self.cache.pod, quota_check=self.quota_check, protected=self.protected, synced=self.synced,
        )

    def quota_check(self, pod: PodInfo) -> QuotaVerdict:
        """The pod-level quota verdict (``extender.quota_gate``)."""
        return self.quota_gate.check(pod)

    def protected(self, victim: PodInfo, preemptor: PodInfo) -> str | None:
        """Why kube-scheduler may not evict `victim` for `preemptor` (None: it may)."""
        return self.quota_gate.protected(victim, preemptor)

    def _poke_controller(self) -> None:
        if self.controller is not None:
            self.controller.poke()

    # --- events and readiness --------------------------------------------------------------------
    async def _emit(self, ref: dict[str, str], type_: str, reason: str, message: str) -> None:
        if self.events is not None:
            await self.events.emit(ref, type_, reason, message)

    @property
    def synced(self) -> bool:
        return bool(self.reflectors) and all(r.synced.is_set() for r in self.reflectors)

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    @property
    def ready(self) -> bool:
        return self.synced and self.leading

    def handler(self, fn: Callable[[str, dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], None]:
        def handle(kind: str, obj: dict[str, Any]) -> None:
            if self.controller is not None:
                self.controller.deliver(fn, kind, obj)  # held while a reconcile pass reads the cache
            else:
                fn(kind, obj)
        return handle

    def build_reflectors(self) -> list[Reflector]:
        assert self.client is not None
        c = self.cache
        specs = [
            (NODES.path(), c.on_node, "nodes"),
            (PODS.path(), c.on_pod, "pods"),
            (RAYJOBS.path(), c.on_rayjob, "rayjobs"),
            (RAYCLUSTERS.path(), c.on_raycluster, "rayclusters"),
            (BATCH_JOBS.path(), c.on_batch_job, "jobs"),
            (TREES.path(keys.QUOTA_TREE_NAMESPACE), c.on_tree, "elasticquotatrees"),
            (QUEUES.path(keys.QUEUE_NAMESPACE), c.on_queue, "queues"),
            (QUEUE_UNITS.path(), c.on_queue_unit, "queueunits"),
            (PRIORITY_CLASSES.path(), c.on_priority_class, "priorityclasses"),
        ]
        # The Cache keeps its own record of each object and reads only the identity of a DELETED one
        # (tests/unit/test_cache.py: a tombstone deletes what the whole object deletes): the stores keep no copy.
        self.reflectors = [Reflector(self.client, path, self.handler(fn), name=name, keep=tombstone)
                           for path, fn, name in specs]
        return self.reflectors

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # 5,000 node names and a pod fit easily
        self.scheduling.routes(app)

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def readyz(_: web.Request) -> web.Response:
            if self.ready:
                return web.Response(text="ready\n")
            why = "cache not synced" if not self.synced else "not the leader"
            return web.Response(status=503, text=f"not ready: {why}\n")

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        return app


def settle_memory() -> None:
    """Move everything allocated so far (the synced cache, mostly) out of the cyclic collector's sight.

    A full collection walks every tracked object: with 5,000 nodes, 20,000 pods and 10,000 RayJobs cached
    that is a pause of hundreds of milliseconds on the verbs' event loop (measured by bench.verbs_load).
    Frozen objects are still freed by reference counting; only cycles among them would stay."""
    gc.collect()
    gc.freeze()


async def run(settings: Settings, *, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`): cache everything, lead, reconcile, answer the scheduler."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    async with KubeClient(load_configuration(settings.kubeconfig)) as client:
        service = Service(settings, client, clock)
        if settings.leader_elect:
            service.elector = LeaderElector(client, settings.namespace, settings.lease_name, settings.identity, clock,
                                            on_lost=stop.set)
        tasks = [asyncio.create_task(r.run(stop)) for r in service.build_reflectors()]
        if service.elector is not None:
            tasks.append(asyncio.create_task(service.elector.run(stop)))

        async def control() -> None:
            await asyncio.gather(*(r.synced.wait() for r in service.reflectors))
            log.info("cache synced: %d nodes, %d pods, %d RayJobs", len(service.cache.nodes.nodes()),
                     len(service.cache.pods()), len(service.cache.jobs()))
            settle_memory()
            if service.elector is not None:
                await service.elector.became_leader.wait()
            assert service.controller is not None
            await service.controller.run(stop)

        async def expire_barrier() -> None:
            while not stop.is_set():
                service.scheduling.settle_expired()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)

        tasks += [asyncio.create_task(control()), asyncio.create_task(expire_barrier())]
        runner = web.AppRunner(service.app(), handle_signals=False, shutdown_timeout=5.0, access_log=None)
        await runner.setup()
        context = None
        if settings.tls_cert and settings.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
        await site.start()
        log.info("extender listening on %s:%d (%s)", settings.host, settings.port, "https" if context else "http")
        try:
            await stop.wait()
        finally:
            await service.scheduling.close()
            await runner.cleanup()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
