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
from extender.controller import Controller
from extender.forecaster import Forecaster
from extender.gang import Reservations
from extender.namespace_labels import repair_namespace_labels
from extender.quota_gate import QuotaGate
from extender.scheduling import SchedulingEndpoints
from extender.settings import Settings
from extender.verbs import SchedulerView
from kubeio.client import KubeClient, load_configuration
from kubeio.events import EventRecorder
from kubeio.leader import LeaderElector
from kubeio.lifecycle import Tasks, stop_on_signals
from kubeio.reflector import Reflector, tombstone
from kubeio.scopes import (
    BATCH_JOBS,
    NODES,
    PODS,
    PRIORITY_CLASSES,
    QUEUE_UNITS,
    QUEUES,
    RAYCLUSTERS,
    RAYJOBS,
    TREES,
)

__all__ = ["Service", "run", "settle_memory"]

log = logging.getLogger("rayqueue.extender")



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
        """Every watch is live: listed, and not failed since (kubeio.reflector.Reflector.synced)."""
        return bool(self.reflectors) and all(r.synced.is_set() for r in self.reflectors)

    def not_live(self) -> list[str]:
        """The watches that are not live, each with why: `pods (ServerDisconnectedError: ... for 3s)`."""
        now = self.clock.monotonic()
        return [f"{r.name} ({r.failure} for {now - r.failed_at:.0f}s)" if r.failure and r.failed_at is not None
                else f"{r.name} (not listed yet)" for r in self.reflectors if not r.synced.is_set()]

    def not_synced(self) -> str | None:
        """Why this replica may not take the Lease now: a cache that is not synced (None: it may campaign)."""
        return None if self.synced else f"cache not synced: {', '.join(self.not_live()) or 'no watch started'}"

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
        self.reflectors = [Reflector(self.client, path, self.handler(fn), name=name, keep=tombstone, clock=self.clock)
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
            why = self.not_synced() or "not the leader"
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
    """Serve until SIGTERM/SIGINT (or `stop`): cache everything, lead, reconcile, answer the scheduler.

    Nothing here ends for good on an error: the reflectors re-list for ever; any task that ends anyway, or a lost
    Lease, or watches that stay down longer than the renew deadline while leading, take the process down
    (ServiceFailed, exit status 1) so that Kubernetes restarts it and it rebuilds from the API."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    tasks = Tasks("extender", stop)
    forecaster = Forecaster()  # the start-time replay's own process (it never holds this one's interpreter lock)
    async with KubeClient(load_configuration(settings.kubeconfig)) as client:
        service = Service(settings, client, clock)
        if service.controller is not None:
            service.controller.offload = forecaster.compute
            tasks.start("forecast worker start", forecaster.warm(), once=True)
        if settings.leader_elect:
            service.elector = LeaderElector(client, settings.namespace, settings.lease_name, settings.identity, clock,
                                            lease_duration=settings.lease_duration,
                                            renew_deadline=settings.renew_deadline,
                                            retry_period=settings.retry_period, on_lost=tasks.fail,
                                            hold_back=service.not_synced)
        for r in service.build_reflectors():
            tasks.start(f"reflector {r.name}", r.run(stop))
        if service.elector is not None:
            tasks.start("leader election", service.elector.run(stop))
        admitting = asyncio.Event()  # the controller runs while this is set: leading, every watch live

        async def control() -> None:
            first = True
            while not stop.is_set():
                await _until(lambda: service.synced and service.leading, stop)
                if stop.is_set():
                    return
                if first:
                    log.info("cache synced: %d nodes, %d pods, %d RayJobs", len(service.cache.nodes.nodes()),
                             len(service.cache.pods()), len(service.cache.jobs()))
                    settle_memory()
                    first = False
                else:
                    log.warning("every watch is live again: the queue controller resumes")
                # A new leader (a standby taking over, or a restart) and a resume alike: the pods kube-scheduler
                # tried while no replica led or the watches were down sit in its unschedulable queue.
                tasks.start("wake pending pods", _wake_pending(client, service, clock), once=True)
                assert service.controller is not None
                admitting.set()
                halt = asyncio.Event()
                guard = asyncio.create_task(_halt_when(lambda: stop.is_set() or not admitting.is_set(), halt))
                try:
                    await service.controller.run(halt)
                finally:
                    guard.cancel()
                    await asyncio.gather(guard, return_exceptions=True)

        async def guard_watches() -> None:
            """Stop admitting at once when a watch is not live; step down when that lasts the renew deadline."""
            deadline = service.elector.renew_deadline if service.elector is not None else None
            while not stop.is_set():
                down = [r for r in service.reflectors if not r.synced.is_set() and r.failed_at is not None]
                if down and admitting.is_set():
                    admitting.clear()
                    log.warning("the queue controller pauses: watches not live: %s", ", ".join(service.not_live()))
                elif not service.leading and admitting.is_set():
                    admitting.clear()
                longest = max((clock.monotonic() - r.failed_at for r in down if r.failed_at is not None), default=0.0)
                if deadline is not None and service.elector is not None and service.elector.is_leader and \
                        longest > deadline:
                    await service.elector.step_down(f"watches not live for over {deadline:.0f}s: "
                                                    f"{', '.join(service.not_live())}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=_GUARD_PERIOD)

        async def expire_barrier() -> None:
            while not stop.is_set():
                service.scheduling.settle_expired()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.5)

        tasks.start("queue controller", control())
        tasks.start("watch guard", guard_watches())
        tasks.start("bind barrier expiry", expire_barrier())
        tasks.start("namespace label repair", repair_namespace_labels(
            client, lambda: service.cache.tree, lambda: service.synced and service.leading, stop))
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
            await tasks.close()
            forecaster.close()
    tasks.check()


_GUARD_PERIOD = 0.25  # seconds between the watch guard's looks: how soon admitting pauses after a watch fails


async def _until(condition: Callable[[], bool], stop: asyncio.Event) -> None:
    """Wait until `condition` holds or `stop` is set, looking every guard period."""
    while not condition() and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=_GUARD_PERIOD)


async def _halt_when(condition: Callable[[], bool], halt: asyncio.Event) -> None:
    """Set `halt` once `condition` holds."""
    await _until(condition, halt)
    halt.set()


async def _wake_pending(client: KubeClient, service: Service, clock: Clock) -> None:
    """Annotate every pending, unbound pod of a quota namespace (rayqueue.io/extender-resynced) so that
    kube-scheduler retries now the pods it tried while no replica led or the cache was not live: it parks a pod
    the extender answered with an Error in its unschedulable queue, for up to 60 s (1.20) to 5 min, and moves it
    back when the pod's metadata changes. Without it a standby that takes over admits nothing until those pods'
    jobs run: they hold the capacity (measured: 26 s after the takeover, in test_failover)."""
    pending = [p for p in service.cache.pods() if not p.node_name and p.phase in ("", "Pending")
               and service.cache.leaf_for(p.namespace) is not None]
    patch = {"metadata": {"annotations": {keys.RESYNCED: clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}}}
    for pod in pending:
        try:
            await client.patch(PODS.path(pod.namespace, pod.name), patch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # gone meanwhile, or the apiserver is down again: the next resume retries
            log.info("could not wake pending pod %s/%s: %s: %s", pod.namespace, pod.name, type(exc).__name__, exc)
    if pending:
        log.info("woke %d pending pod(s) for kube-scheduler to retry now that this replica leads with every watch "
                 "live", len(pending))
