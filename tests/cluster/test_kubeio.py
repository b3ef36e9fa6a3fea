"""kubeio against the real apiserver: list+watch survives an expired watch; leader election hands over."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.clock import SystemClock
from devcluster.cluster import LocalCluster
from kubeio.client import KubeClient, Scope, load_configuration
from kubeio.leader import LeaderElector
from kubeio.reflector import Reflector

PODTEMPLATES = Scope("", "v1", "podtemplates")


def template(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}


class ExpiringOnce(Reflector):
    """Its first list pretends to be at resourceVersion 1, long compacted away: the watch must end in 410."""

    async def _relist(self) -> str:
        version = await super()._relist()
        return "1" if self.relists == 1 else version


async def _until(predicate: Any, within: float, what: str) -> None:
    """Poll state that another task changes (it has no event to wait on), for at most `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_a_reflector_lists_again_when_its_watch_has_expired(cluster: LocalCluster, namespace: str) -> None:
    """PodTemplates bypass the harness apiserver's watch cache, so the 410 Gone is etcd's own."""
    async with KubeClient(load_configuration(str(cluster.admin_kubeconfig))) as client:
        await client.create(PODTEMPLATES.path(namespace), template("before"))
        assert cluster.compact_etcd() > 1
        seen: list[tuple[str, str]] = []
        reflector = ExpiringOnce(client, PODTEMPLATES.path(namespace),
                                 lambda kind, obj: seen.append((kind, obj["metadata"]["name"])), name="podtemplates")
        stop = asyncio.Event()
        task = asyncio.create_task(reflector.run(stop))
        try:
            await _until(lambda: reflector.relists >= 2, 30, "a second list after 410 Gone")
            await client.create(PODTEMPLATES.path(namespace), template("after"))
            await _until(lambda: ("ADDED", "after") in seen, 30, "the new PodTemplate through the watch")
            assert {o["metadata"]["name"] for o in reflector.store.values()} == {"before", "after"}
            assert seen.count(("ADDED", "before")) == 1, "a re-list replays what is known as MODIFIED, not ADDED"
            assert all("managedFields" not in o["metadata"] for o in reflector.store.values()), "stored slim"
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_leader_election_hands_over_when_the_leader_steps_down(cluster: LocalCluster, namespace: str) -> None:
    async with KubeClient(load_configuration(str(cluster.admin_kubeconfig))) as client:
        clock = SystemClock()
        first = LeaderElector(client, namespace, "lease", "first", clock, lease_duration=4, renew_deadline=3,
                              retry_period=0.3)
        second = LeaderElector(client, namespace, "lease", "second", clock, lease_duration=4, renew_deadline=3,
                               retry_period=0.3)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(first.run(stop_first))
        await _until(lambda: first.is_leader, 10, "the first replica to lead")
        t2 = asyncio.create_task(second.run(stop_second))
        try:
            await asyncio.sleep(1.5)
            assert first.is_leader and not second.is_leader, "one leader at a time"
            stop_first.set()  # graceful: it releases the lease
            await asyncio.wait_for(t1, 10)
            await _until(lambda: second.is_leader, 5, "the standby to take over at once")
            lease = await client.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/lease")
            assert lease["spec"]["holderIdentity"] == "second"
            assert lease["spec"]["leaseTransitions"] >= 1
        finally:
            stop_first.set()
            stop_second.set()
            await asyncio.gather(t1, t2, return_exceptions=True)
