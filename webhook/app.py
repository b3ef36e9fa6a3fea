"""The webhook's adapter: AdmissionReview request -> policy -> (SubjectAccessReview) -> response; and main()."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from common import keys
from common.clock import Clock, SystemClock
from common.gotime import from_datetime
from kubeio.client import ApiError, KubeClient, Scope, load_configuration
from kubeio.lifecycle import Tasks, stop_on_signals
from kubeio.reflector import Reflector
from kubeio.scopes import NAMESPACES, PRIORITY_CLASSES, QUEUE_UNITS, QUEUES, RAYCLUSTERS, RAYJOBS, TREES
from webhook.freshness import stale_tree_refusal
from webhook.policy import (
    ClusterLookup,
    NamespaceListing,
    PolicyConfig,
    admit,
    needs_live_tree,
    owner_target,
    selector_target,
)
from webhook.review import BadReview, Permission, Request, User, Verdict, deny, render
from webhook.selfcert import CertKeeper
from webhook.server import build_app, serve
from webhook.settings import Settings
from webhook.tls import CertReloader, new_server_context, server_context
from webhook.view import ClusterView

__all__ = ["Admission", "run"]

log = logging.getLogger("rayqueue.webhook")

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class Admission:
    """One admission path (mutating or validating). No API call unless the verdict requires one."""

    def __init__(self, view: ClusterView, cfg: PolicyConfig, client: KubeClient | None, *, mutating: bool,
                 tree_stale: Callable[[], str | None] = lambda: None) -> None:
        self.view = view
        self.cfg = cfg
        self.client = client
        self.mutating = mutating
        self.tree_stale = tree_stale  # why the tree watch is not live, None while it is (webhook.freshness)

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            req = Request.parse(request)
        except BadReview as exc:
            return render(deny(f"rayqueue: {exc}", code=400))
        stale = self.tree_stale()
        refusal = stale_tree_refusal(req, self.view.tree, stale) if stale is not None else None
        if refusal is not None:
            log.warning("refused %s %s %s: %s", req.operation, req.kind, req.display_name, refusal.message)
            return render(refusal)
        admitted: dict[str, list[str]] | None = None
        if not self.mutating and req.resource == keys.QUOTA_TREE_PLURAL and req.operation == "UPDATE":
            admitted = await self._admitted_jobs()
        facts = self.view.snapshot(admitted)
        target = None if self.mutating else selector_target(req, facts)
        if target is not None:  # a clusterSelector RayJob's CREATE: read the RayCluster it selects, once
            facts = replace(facts, selected_clusters={target: await self._read_cluster(target)})
        owner = None if self.mutating else owner_target(req, facts)
        if owner is not None:  # a RayCluster's CREATE naming a RayJob as its controller: read that RayJob, once
            facts = replace(facts, owner_jobs={owner: await self._read_cluster(owner, RAYJOBS)})
        if not self.mutating and req.resource == keys.QUOTA_TREE_PLURAL:  # rule N1: one live list per tree write
            facts = replace(facts, namespaces=await self._list_namespaces())
        if needs_live_tree(req, mutating=self.mutating):  # rules N2, N3: the tree as stored now, not as watched
            facts = replace(facts, live_tree=await self._read_tree())
        verdict = admit(req, facts, self.cfg, mutating=self.mutating)
        if verdict.allowed and verdict.requires is not None:
            verdict = await self._check(req.user, verdict)
        for line in verdict.audit:
            log.info("audit: %s", line)
        if not verdict.allowed:
            log.info("denied %s %s %s by %s: %s", req.operation, req.kind, req.display_name, req.user, verdict.message)
        return render(verdict)

    async def _check(self, user: User, verdict: Verdict) -> Verdict:
        need = verdict.requires
        assert need is not None
        if self.client is None:
            return deny(need.denied_message + " (no API client to check permissions)")
        try:
            allowed = await subject_access(self.client, user, need)
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("SubjectAccessReview for %s failed: %s", user, exc)
            return deny(f"{need.denied_message} (the permission check failed: {exc})")
        return verdict if allowed else deny(need.denied_message)

    async def _read_cluster(self, target: str, scope: Scope = RAYCLUSTERS) -> ClusterLookup:
        """GET the RayCluster (or, with `scope`, the RayJob) `namespace/name`: the object, none (404), or why it
        could not be read."""
        if self.client is None:
            return ClusterLookup(error="no API client")
        namespace, name = target.split("/", 1)
        try:
            return ClusterLookup(obj=await self.client.get(scope.path(namespace, name)))
        except ApiError as exc:
            if exc.not_found:
                return ClusterLookup()
            log.warning("could not read %s %s: %s", scope.plural, target, exc)
            return ClusterLookup(error=f"the API answered {exc.status} {exc.reason}: {exc.message}")
        except (TimeoutError, OSError) as exc:
            log.warning("could not read %s %s: %s", scope.plural, target, exc)
            return ClusterLookup(error=f"the read failed: {exc}")

    async def _list_namespaces(self) -> NamespaceListing:
        """Every Namespace's labels by name (rule N1), or why they could not be listed."""
        if self.client is None:
            return NamespaceListing(error="no API client")
        try:
            listed = await self.client.get(NAMESPACES.path())
        except ApiError as exc:
            log.warning("could not list Namespaces for rule quota-namespace-label: %s", exc)
            return NamespaceListing(error=f"the API answered {exc.status} {exc.reason}: {exc.message}")
        except (TimeoutError, OSError) as exc:
            log.warning("could not list Namespaces for rule quota-namespace-label: %s", exc)
            return NamespaceListing(error=f"the list failed: {exc}")
        return NamespaceListing(labels={
            str((ns.get("metadata") or {}).get("name")): dict((ns.get("metadata") or {}).get("labels") or {})
            for ns in listed.get("items") or []})

    async def _read_tree(self) -> ClusterLookup:
        """GET the ElasticQuotaTree (rules N2, N3): the object, none (404), or why it could not be read."""
        return await self._read_cluster(f"{keys.QUOTA_TREE_NAMESPACE}/{keys.QUOTA_TREE_NAME}", TREES)

    async def _admitted_jobs(self) -> dict[str, list[str]]:
        """Running (dequeued, not suspended) RayJobs by namespace, for the tree-update warnings."""
        if self.client is None:
            return {}
        try:
            jobs = await self.client.get(RAYJOBS.path())
        except (TimeoutError, ApiError, OSError) as exc:
            log.warning("could not list RayJobs for the tree-update warnings: %s", exc)
            return {}
        out: dict[str, list[str]] = defaultdict(list)
        for job in jobs.get("items") or []:
            meta = job.get("metadata") or {}
            if keys.DEQUEUE_TIMESTAMP in (meta.get("annotations") or {}) and not (job.get("spec") or {}).get("suspend"):
                out[str(meta.get("namespace"))].append(f"{meta.get('namespace')}/{meta.get('name')}")
        return dict(out)


async def subject_access(client: KubeClient, user: User, need: Permission) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user.username,
            "groups": list(user.groups),
            "resourceAttributes": {"namespace": need.namespace, "verb": need.verb, "group": need.group,
                                   "resource": need.resource},
        },
    }
    answer = await client.create(SAR_PATH, review)
    return bool((answer.get("status") or {}).get("allowed"))


async def run(settings: Settings, *, clock: Clock | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or `stop`): watch the tree and priority classes, answer reviews.

    The watches re-list for ever (kubeio.reflector); readiness is "the tree and priority class watches are live";
    while the tree watch is not, creates it cannot judge are refused (webhook.freshness). A task that ends anyway
    takes the process down (ServiceFailed) so that Kubernetes restarts it."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    tasks = Tasks("webhook", stop)
    view = ClusterView(lambda: from_datetime(clock.now()))
    log.info("judging RayJobs by KubeRay v1.7's validation with feature gates %s", settings.policy.kuberay_gates)
    if settings.kuberay is not None:  # parse_settings has refused batch-scheduler mode already
        log.info("KubeRay operator configuration: no batch scheduler, %d head and %d worker sidecar containers",
                 len(settings.kuberay.head_sidecar_containers), len(settings.kuberay.worker_sidecar_containers))
    if settings.certs is None:  # --cert-management=files
        cert, key = Path(settings.tls_cert or ""), Path(settings.tls_key or "")
        context = server_context(cert, key)
        CertReloader(context, cert, key, clock=clock).install()
    else:
        context = new_server_context()  # the pair comes from the Secret, before serving starts

    def live(flag: Callable[[bool], None], what: str) -> Callable[[bool], None]:
        def changed(is_live: bool) -> None:
            flag(is_live)
            if is_live and view.ready:
                log.info("ready: tree %s, %d priority classes",
                         "loaded" if view.tree else "absent (every namespace unbound)", len(view.priority_classes))
            elif not is_live:
                log.warning("not ready: the %s watch is not live", what)
        return changed

    def tree_live(on: bool) -> None:
        view.tree_synced = on

    def classes_live(on: bool) -> None:
        view.classes_synced = on

    def queues_live(on: bool) -> None:  # the create warning waits for these; readiness does not
        view.queues.queues_synced = on

    def units_live(on: bool) -> None:
        view.queues.units_synced = on

    async with KubeClient(load_configuration(settings.kubeconfig)) as client:
        keeper = CertKeeper(client, settings.certs, settings.namespace, context, clock=clock) if settings.certs else None
        trees = Reflector(client, TREES.path(keys.QUOTA_TREE_NAMESPACE), view.on_tree, name="elasticquotatrees",
                          clock=clock, on_live=live(tree_live, "ElasticQuotaTree"))
        reflectors = [
            trees,
            Reflector(client, PRIORITY_CLASSES.path(), view.on_priority_class, name="priorityclasses", clock=clock,
                      on_live=live(classes_live, "PriorityClass")),
            Reflector(client, QUEUES.path(keys.QUEUE_NAMESPACE), view.queues.on_queue, name="queues", clock=clock,
                      on_live=queues_live),
            Reflector(client, QUEUE_UNITS.path(), view.queues.on_queue_unit, name="queueunits", clock=clock,
                      on_live=units_live),
        ]

        def tree_stale() -> str | None:
            if trees.synced.is_set():
                return None
            return trees.failure or "not listed yet"

        app = build_app(
            {"/mutate": Admission(view, settings.policy, client, mutating=True, tree_stale=tree_stale),
             "/validate": Admission(view, settings.policy, client, mutating=False, tree_stale=tree_stale)},
            readiness=lambda: view.ready and (keeper is None or keeper.ready), metrics_registry=CollectorRegistry(),
            max_body_bytes=settings.max_body_bytes,
            clock=clock, why_not_ready=lambda: not_live(reflectors[:2], clock),
        )
        for r in reflectors:
            tasks.start(f"reflector {r.name}", r.run(stop))
        if keeper is not None:
            tasks.start("certificate keeper", keeper.run(stop))
        try:
            if keeper is not None and not await keeper.wait_started(stop):
                return  # stopped before the certificate and caBundle were in place
            await serve(app, settings.host, settings.port, context, stop_event=stop, access_log=settings.access_log,
                        on_started=lambda s: log.info("serving on %s", ", ".join(map(str, s.addresses))))
        finally:
            stop.set()
            await tasks.close()
    tasks.check()


def not_live(reflectors: list[Reflector], clock: Clock) -> str:
    """The readiness watches that are not live, each with why and for how long."""
    now = clock.monotonic()
    return ", ".join(f"the {r.name} watch is not live ({r.failure} for {now - r.failed_at:.0f}s)"
                     if r.failure and r.failed_at is not None else f"the {r.name} watch has not listed yet"
                     for r in reflectors if not r.synced.is_set())
