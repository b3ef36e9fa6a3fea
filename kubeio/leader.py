"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: acquire, renew, step down."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from common.clock import Clock
from kubeio.client import ApiError, KubeClient, Scope

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)

LEASES = Scope("coordination.k8s.io", "v1", "leases")


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

    Losing the lease (a renewal not done within `renew_deadline`) calls `on_lost` once: the process should
    stop, and restart to rebuild from the API, as client-go's callers do.
    """

    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, clock: Clock, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_lost: Callable[[], None] | None = None) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        self.client, self.namespace, self.name, self.identity, self.clock = client, namespace, name, identity, clock
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_lost = on_lost
        self.is_leader = False
        self.became_leader = asyncio.Event()
        self._renewed_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ok = await self._try_acquire_or_renew()
            except (ApiError, OSError, TimeoutError) as exc:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                ok = False
            now = self.clock.monotonic()
            if ok:
                self._renewed_at = now
                if not self.is_leader:
                    self.is_leader = True
                    self.became_leader.set()
                    log.info("became the leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
            elif self.is_leader and now - self._renewed_at > self.renew_deadline:
                self.is_leader = False
                log.error("lost the lease %s/%s: not renewed within %.0fs", self.namespace, self.name,
                          self.renew_deadline)
                if self.on_lost is not None:
                    self.on_lost()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.retry_period)
        if self.is_leader:
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
        """Step down at shutdown so a standby takes over at once instead of waiting out the lease."""
        path = LEASES.path(self.namespace, self.name)
        try:
            lease = await self.client.get(path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.client.replace(path, lease)
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("could not release the lease: %s", exc)
        self.is_leader = False
