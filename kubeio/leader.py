"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: acquire, renew, step down."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from common.clock import Clock
from kubeio.client import ApiError, KubeClient
from kubeio.scopes import LEASES

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)

_HOLD_BACK_POLL = 0.25  # seconds between looks at `hold_back` while it holds a replica back


def _micro(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaderElector:
    """`run(stop)` campaigns until `stop`; `is_leader` is true while the lease is ours and fresh.

    As client-go's ``LeaderElector.renew`` (tools/leaderelection/leaderelection.go): the leader retries its
    renewal every `retry_period`, each attempt bounded by what is left of `renew_deadline`; a renewal not done
    within `renew_deadline` of the last one steps down at once. `is_leader` turns false the moment the deadline
    passes (even while an attempt still hangs), so the caller stops admitting and stops answering ready before a
    standby can take the lease (`lease_duration` > `renew_deadline`). Stepping down -- for that or because the
    caller asks (`step_down`, e.g. its watches are lost) -- calls `on_lost` once with the reason, releases the lease
    if it can (client-go's ReleaseOnCancel) and ends `run`: the process should stop, and restart to rebuild from
    the API, as client-go's callers do.

    `hold_back`, when given, says why this replica must not take the lease now (None: it may): a standby whose
    caches are not synced does not campaign, so that it cannot become a leader that admits nothing while a
    synced replica waits. It is asked before every acquire attempt, never of a leader renewing.
    """

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, clock: Clock, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_lost: Callable[[str], None] | None = None,
                 hold_back: Callable[[], str | None] | None = None) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        self.client, self.namespace, self.name, self.identity, self.clock = client, namespace, name, identity, clock
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_lost, self.hold_back = on_lost, hold_back
        self.held_back: str | None = None  # why the last acquire attempt was not made, while that lasts
        self.became_leader = asyncio.Event()
        self.lost: str | None = None  # why this replica stepped down, once it has
        self._leading = False
        self._renewed_at = 0.0
        self._failing: str | None = None  # the class of the error the last attempt failed with

    @property
    def is_leader(self) -> bool:
        return self._leading and self.clock.monotonic() - self._renewed_at <= self.renew_deadline

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.lost is None:
            ok = False if self._holding_back() else await self._attempt()
            now = self.clock.monotonic()
            if ok:
                self._renewed_at = now
                if not self._leading:
                    self._leading = True
                    self.became_leader.set()
                    log.info("became the leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
            elif self._leading and now - self._renewed_at > self.renew_deadline:
                await self.step_down(f"the lease {self.namespace}/{self.name} was not renewed within "
                                     f"{self.renew_deadline:.0f}s (last error: {self._failing or 'taken by another'})")
                return
            # Held back, nothing is asked of the API: look again soon, so a replica that has just synced
            # campaigns at once rather than a retry period later.
            wait = min(self.retry_period, _HOLD_BACK_POLL) if self.held_back is not None else self.retry_period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        if self._leading:
            await self._release()

    def _holding_back(self) -> bool:
        """True while a replica that does not lead must not campaign (`hold_back`); logs when that starts and ends."""
        why = None if self._leading or self.hold_back is None else self.hold_back()
        if (why is None) != (self.held_back is None):
            if why is not None:
                log.info("lease %s/%s: not campaigning (identity %s): %s", self.namespace, self.name,
                         self.identity, why)
            else:
                log.info("lease %s/%s: campaigning (identity %s): the hold-back has cleared", self.namespace,
                         self.name, self.identity)
        self.held_back = why
        return why is not None

    async def _attempt(self) -> bool:
        """One try, bounded by the renew deadline; any failure (never a cancellation) is logged once and is False."""
        budget = self.renew_deadline
        if self._leading:
            budget = max(0.1, self.renew_deadline - (self.clock.monotonic() - self._renewed_at))
        try:
            ok = await asyncio.wait_for(self._try_acquire_or_renew(), timeout=budget)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            what = "TimeoutError: no answer within the renew deadline" if isinstance(exc, TimeoutError) else \
                f"{type(exc).__name__}: {exc}"
            log.warning("lease %s/%s: %s attempt failed (%s)", self.namespace, self.name,
                        "renew" if self._leading else "acquire", what)
            self._failing = what
            return False
        if self._failing is not None and ok:
            log.info("lease %s/%s: %s again after %s", self.namespace, self.name,
                     "renewed" if self._leading else "reachable", self._failing)
        self._failing = None
        return ok

    async def step_down(self, reason: str) -> None:
        """Stop leading at once for `reason`: `on_lost(reason)`, then release the lease if it can."""
        if self.lost is not None:
            return
        was_leading, self._leading, self.lost = self._leading, False, reason
        log.error("stepping down as the leader (identity %s): %s", self.identity, reason)
        if self.on_lost is not None:
            self.on_lost(reason)
        if was_leading:
            await self._release()

    async def _try_acquire_or_renew(self) -> bool:
        now = self.clock.now()
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.client.get(path)
        except ApiError as exc:
            if not exc.not_found:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, now, transitions=0)}
            try:
                await self.client.create(LEASES.path(self.namespace), body)
            except ApiError as create_exc:
                if create_exc.conflict:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse_micro(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and renewed is not None and \
                now < renewed + dt.timedelta(seconds=duration):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = _parse_micro(spec.get("acquireTime")) if holder == self.identity else now
        lease["spec"] = self._spec(acquired or now, now, transitions)
        try:
            await self.client.replace(path, lease)  # guarded by the resourceVersion we read
        except ApiError as exc:
            if exc.conflict:
                return False
            raise
        return True

    def _spec(self, acquired: dt.datetime, renewed: dt.datetime, transitions: int) -> dict[str, object]:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": _micro(acquired), "renewTime": _micro(renewed), "leaseTransitions": transitions}

    async def _release(self) -> None:
        """Step down so a standby takes over at once instead of waiting out the lease; bounded by the renew
        deadline, and only if the lease is still ours."""
        path = LEASES.path(self.namespace, self.name)
        self._leading = False
        try:
            async with asyncio.timeout(self.renew_deadline):
                lease = await self.client.get(path)
                if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                    lease["spec"]["holderIdentity"] = None
                    lease["spec"]["leaseDurationSeconds"] = 1
                    await self.client.replace(path, lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not release the lease %s/%s (%s: %s)", self.namespace, self.name,
                        type(exc).__name__, exc)
