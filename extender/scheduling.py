"""The extender's HTTP verbs (kube-scheduler extender/v1): parse once, decide with the pure verbs on one
snapshot of the cache, render. Bind goes through the all-or-nothing barrier, then the Binding API."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common import keys
from common.clock import Clock
from extender.barrier import BindBarrier, Fail, Outcome, ReleaseAll, Wait
from extender.gang import Reservations
from extender.protocol import (
    BindResult,
    ProtocolError,
    parse_bind_args,
    parse_filter_args,
    parse_preempt_args,
    render_bind_result,
    render_filter_result,
    render_preempt_result,
    render_priorities,
)
from extender.verbs import SchedulerView, bind_arrival, filter_nodes, gang_status, preempt, prioritize
from kubeio.client import ApiError, KubeClient

__all__ = ["SchedulingEndpoints"]

log = logging.getLogger("rayqueue.extender.scheduling")

Emit = Callable[[dict[str, str], str, str, str], Awaitable[None]]

# Seconds before each retry of a Binding after a transient failure: 1.7 s in all, well inside the bind verb's
# httpTimeout (30 s in manifests/scheduler) less the 25 s a gang may wait at the barrier.
BIND_PAUSES: tuple[float, ...] = (0.2, 0.5, 1.0)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter("rayqueue_extender_calls", "Extender verb calls by verb and result",
                             ["verb", "result"], registry=registry)
        self.latency = Histogram("rayqueue_extender_verb_seconds", "Extender verb latency", ["verb"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
                                 registry=registry)
        self.gang_waits = Histogram("rayqueue_gang_bind_wait_seconds", "Time gang members wait at the bind barrier",
                                    buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 30), registry=registry)
        self.gang_failures = Counter("rayqueue_gang_failures", "Gangs failed at the bind barrier", registry=registry)
        self.gang_waiting = Gauge("rayqueue_gang_bind_waiting", "Gang members waiting at the bind barrier now",
                                  registry=registry)


class SchedulingEndpoints:
    """`/filter`, `/prioritize`, `/preempt`, `/bind`. `view()` returns one consistent snapshot (no await
    inside a decision, so it is atomic on the event loop)."""

    def __init__(self, view: Callable[[], SchedulerView], reservations: Reservations, barrier: BindBarrier,
                 client: KubeClient | None, emit: Emit, clock: Clock, registry: CollectorRegistry, *,
                 assume: Callable[[str, str], None] = lambda uid, node: None,
                 forget: Callable[[str], None] = lambda uid: None) -> None:
        self.view, self.reservations, self.barrier = view, reservations, barrier
        self.assume, self.forget = assume, forget
        self.client, self.emit, self.clock = client, emit, clock
        self.metrics = _Metrics(registry)
        self._waiters: dict[int, list[asyncio.Future[str]]] = defaultdict(list)
        self._arrived_at: dict[int, float] = {}
        self._cycle: dict[str, int] = defaultdict(lambda: 1)
        self._reported: dict[str, set[str]] = defaultdict(set)
        self._background: set[asyncio.Task[Any]] = set()
        self._woken: dict[str, object] = {}  # gang -> the reservation its members were woken for
        self.bind_pauses: tuple[float, ...] = BIND_PAUSES

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/filter", self._timed("filter", self.filter))
        app.router.add_post("/prioritize", self._timed("prioritize", self.prioritize))
        app.router.add_post("/preempt", self._timed("preempt", self.preempt))
        app.router.add_post("/bind", self._timed("bind", self.bind))

    def _timed(self, verb: str, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            started = self.clock.monotonic()
            result = "ok"
            try:
                try:
                    body = orjson.loads(await request.read())
                except orjson.JSONDecodeError as exc:
                    result = "bad_request"
                    return web.Response(status=400, text=f"rayqueue extender: /{verb}: the body is not JSON: {exc}\n")
                try:
                    answer = await handler(body)
                except ProtocolError as exc:
                    result = "bad_request"
                    return web.Response(status=400, text=f"rayqueue extender: /{verb}: {exc}\n")
                return web.Response(body=orjson.dumps(answer), content_type="application/json")
            finally:
                self.metrics.calls.labels(verb, result).inc()
                self.metrics.latency.labels(verb).observe(max(0.0, self.clock.monotonic() - started))
        return serve

    # --- verbs ---------------------------------------------------------------------------------
    async def filter(self, body: Any) -> Any:
        args = parse_filter_args(body)
        view = self.view()
        result = filter_nodes(args, view)
        if result.passed:
            self._wake_gang(args.pod.uid, view)
        elif not result.error:
            status = gang_status(args.pod, view)
            if status is not None:
                reason = next(iter(result.failed.values()), "no node fits")
                self._gang_failed_event(status.key, args.pod.uid, args.pod.namespace, args.pod.name,
                                        f"0/{len(args.node_names)} nodes are available: {reason}")
        return render_filter_result(result, args)

    async def prioritize(self, body: Any) -> Any:
        args = parse_filter_args(body)
        return render_priorities(prioritize(args, self.view()))

    async def preempt(self, body: Any) -> Any:
        return render_preempt_result(preempt(parse_preempt_args(body), self.view()))

    async def bind(self, body: Any) -> Any:
        args = parse_bind_args(body)
        self.settle_expired()
        view = self.view()
        arrival = bind_arrival(args, view)
        if isinstance(arrival, str):
            return render_bind_result(BindResult(error=arrival))
        if arrival.gang is None:  # binds run concurrently: check the quota again, now, on the current usage
            pod = view.pod(arrival.pod_uid)
            decision = view.quota_check(pod) if pod is not None else None
            if decision is not None and not decision:
                return render_bind_result(BindResult(error=f"rayqueue: pod {pod.key if pod else ''}: {decision.reason}"))
        outcome = self.barrier.arrive(arrival.pod_uid, arrival.gang, arrival.node, arrival.expected_members)
        if isinstance(outcome, Wait):
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._waiters[outcome.ticket].append(future)
            self._arrived_at.setdefault(outcome.ticket, self.clock.monotonic())
            self.metrics.gang_waiting.set(len(self._waiters))
            try:
                error = await asyncio.wait_for(asyncio.shield(future), timeout=self.barrier.timeout + 5.0)
            except TimeoutError:
                error = f"gang {outcome.gang}: no outcome within {self.barrier.timeout + 5.0:.0f}s; none bound"
            return render_bind_result(BindResult(error=error))
        errors = await self._settle(outcome)
        return render_bind_result(BindResult(error=errors.get(arrival.pod_uid, "")))

    # --- the barrier's outcomes ----------------------------------------------------------------
    def settle_expired(self) -> None:
        """Fail every gang that waited past the timeout (called on each bind and by a timer)."""
        for fail in self.barrier.expire():
            task = asyncio.ensure_future(self._settle(fail))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _settle(self, outcome: Outcome) -> dict[str, str]:
        """Bind all of a ReleaseAll (concurrently) or none of a Fail; answer every waiter; errors by pod UID."""
        errors: dict[str, str] = {}
        if isinstance(outcome, ReleaseAll):
            for b in outcome.bindings:  # counted at once, before any await: no second bind can pass meanwhile
                self.assume(b.pod_uid, b.node)
            results = await asyncio.gather(*(self._bind_one(b.pod_uid, b.node) for b in outcome.bindings))
            for binding, error in zip(outcome.bindings, results, strict=True):
                errors[binding.pod_uid] = error
                if error:
                    self.forget(binding.pod_uid)
                self._answer(binding.ticket, error)
            if outcome.gang is not None:
                self.reservations.release(outcome.gang)
                self._woken.pop(outcome.gang, None)
                self._cycle.pop(outcome.gang, None)
                self._reported.pop(outcome.gang, None)
        elif isinstance(outcome, Fail):
            self.metrics.gang_failures.inc()
            self.reservations.release(outcome.gang)
            for ticket, uid in zip(outcome.tickets, outcome.pod_uids, strict=True):
                errors[uid] = outcome.reason
                self._answer(ticket, outcome.reason)
                pod = self.view().pod(uid)
                if pod is not None:
                    self._gang_failed_event(outcome.gang, uid, pod.namespace, pod.name, outcome.reason)
        return errors

    def _answer(self, ticket: int, error: str) -> None:
        started = self._arrived_at.pop(ticket, None)
        if started is not None:
            self.metrics.gang_waits.observe(max(0.0, self.clock.monotonic() - started))
        for future in self._waiters.pop(ticket, []):
            if not future.done():
                future.set_result(error)
        self.barrier.forget(ticket)
        self.metrics.gang_waiting.set(len(self._waiters))

    async def _bind_one(self, pod_uid: str, node: str) -> str:
        """POST the pod's Binding; "" once bound, else why not. A transient failure (the apiserver away, a 5xx
        such as a webhook it could not call, a 429) is tried again after each of ``bind_pauses``: the other
        members of a released gang are being bound at the same moment, and one failed call would leave the gang
        partly bound until kube-scheduler's retry, which a failover can delay by tens of seconds. A 409 on a
        retry is success when the pod is bound to this node (the earlier call landed, its answer was lost)."""
        pod = self.view().pod(pod_uid)
        if pod is None:
            return f"pod {pod_uid} is gone from the cache; not bound"
        if self.client is None:
            return "no API client to bind with"
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
        failure: Exception | None = None
        for attempt, pause in enumerate((0.0, *self.bind_pauses)):
            if pause:
                await asyncio.sleep(pause)
            try:
                await self.client.create(f"{path}/binding", body)
                return ""
            except ApiError as exc:
                if attempt and exc.conflict and await self._bound_to(path, pod.uid, node):
                    return ""
                failure, transient = exc, exc.status >= 500 or exc.status == 429
            except (OSError, TimeoutError) as exc:
                failure, transient = exc, True
            log.warning("binding %s/%s to %s failed (attempt %d of %d): %s", pod.namespace, pod.name, node,
                        attempt + 1, 1 + len(self.bind_pauses), failure)
            if not transient:
                break
        return f"binding {pod.namespace}/{pod.name} to {node} failed: {failure}"

    async def _bound_to(self, path: str, uid: str, node: str) -> bool:
        """The pod (this uid) is bound to ``node`` now, read from the API."""
        assert self.client is not None
        try:
            current = await self.client.get(path)
        except (ApiError, OSError, TimeoutError):
            return False
        return ((current.get("metadata") or {}).get("uid") == uid
                and (current.get("spec") or {}).get("nodeName") == node)

    def _wake_gang(self, uid: str, view: SchedulerView) -> None:
        """A gang just got its placement: annotate its other pending members so kube-scheduler retries them
        now (it moves an unschedulable pod to its active queue when the pod's metadata changes); members it
        refused before the gang was complete would otherwise wait for its periodic flush (60 s to 5 min)."""
        pod = view.pod(uid)
        status = gang_status(pod, view) if pod is not None else None
        reservation = self.reservations.get(status.key) if status is not None else None
        if status is None or reservation is None or self._woken.get(status.key) is reservation:
            return
        self._woken[status.key] = reservation
        others = [m for m in status.unbound if m.uid != uid]
        if not others or self.client is None:
            return
        stamp = str(self.clock.monotonic())
        patch = {"metadata": {"annotations": {keys.GANG_PLACED: stamp}}}
        client = self.client

        async def wake() -> None:
            for member in others:
                try:
                    await client.patch(f"/api/v1/namespaces/{member.namespace}/pods/{member.name}", patch)
                except (ApiError, OSError, TimeoutError) as exc:
                    log.info("could not wake gang member %s: %s", member.key, exc)

        task = asyncio.ensure_future(wake())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- events --------------------------------------------------------------------------------
    def _gang_failed_event(self, gang: str, uid: str, namespace: str, name: str, reason: str) -> None:
        """`GangFailedScheduling` as the guide shows it: `<pod> in gang failed to be scheduled in cycle N: ...`.
        One event per member per cycle; a member failing again starts the gang's next cycle."""
        reported = self._reported[gang]
        if uid in reported:
            self._cycle[gang] += 1
            reported.clear()
        reported.add(uid)
        message = f"{name} in gang failed to be scheduled in cycle {self._cycle[gang]}: {reason}"
        ref = {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace, "uid": uid}
        task = asyncio.ensure_future(self.emit(ref, "Warning", keys.EVENT_GANG_FAILED, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result("rayqueue extender is shutting down; none bound")
        await asyncio.gather(*self._background, return_exceptions=True)
