"""Fixtures for tests against the real local control plane: one LocalCluster per session, namespaces, stand-in."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from common import keys
from devcluster import procs
from devcluster.cluster import TENANT, LocalCluster, ensure_binaries
from devcluster.kuberay_standin import MODEL_13, MODEL_17
from devcluster.procs import ManagedProcess
from devcluster.services import (
    SCHEDULER_NAME,
    Extender,
    Webhook,
    install_seed_tree,
    remove_seed_tree,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
    stop_webhook,
)
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import TREE_NAMESPACES, delete_and_wait, queues

_HERE = Path(__file__).resolve().parent
_CLUSTERS: list[LocalCluster] = []  # every cluster this session started, for the leak check at the end
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/cluster needs the local cluster: mark it so `-m 'not cluster'` skips it."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember a failure, and attach the tails of the cluster's logs to the failing test's report."""
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
        for cluster in _CLUSTERS:
            if cluster.processes:
                report.sections.append((f"devcluster logs ({cluster.workdir})", cluster.log_tails(40)))
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Runs after the session fixtures are torn down: no process any cluster started may still run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for kept in (c.workdir for c in _CLUSTERS if c.keep_workdir and c.workdir.exists()):
        if reporter is not None:
            reporter.write_line(f"devcluster: logs and state kept in {kept}")
    leaked = sorted(pid for c in _CLUSTERS for pid in c.started_pids if procs.pid_alive(pid))
    if not leaked:
        return
    for pid in leaked:  # do not leave them behind either way
        procs.stop(ManagedProcess(f"leaked-{pid}", pid, (), Path("/dev/null")), grace=5.0)
    if reporter is not None:
        reporter.write_line(f"devcluster: processes still running after the session: {leaked}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """One real control plane for the session (binaries built once by devcluster/build-kube.sh, cached).

    Its directory (logs, certificates, etcd data) is deleted at the end unless a test failed or
    RAYQUEUE_KEEP_CLUSTER_DIR=1 is set; then its path is printed."""
    local = LocalCluster(ensure_binaries(), keep_workdir=os.environ.get("RAYQUEUE_KEEP_CLUSTER_DIR") == "1")
    _CLUSTERS.append(local)
    with local:
        yield local
        if request.session.testsfailed:
            local.keep_workdir = True


@pytest.fixture(scope="session")
def default_scheduler(cluster: LocalCluster) -> Iterator[ManagedProcess]:
    """The real kube-scheduler with its default profile (`default-scheduler`), for the session."""
    proc = cluster.start_scheduler()
    yield proc
    cluster.stop_scheduler()


def wait_standin_synced(proc: ManagedProcess) -> ManagedProcess:
    """Wait until a stand-in process has listed everything once; raise if it exited."""

    def synced() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the KubeRay stand-in {proc.name} exited:\n{proc.tail(40)}")
        return "caches synced" in proc.tail(200)

    wait_for(synced, 60.0, f"the KubeRay stand-in {proc.name}'s informers to sync")
    return proc


@pytest.fixture(scope="session")
def standin(cluster: LocalCluster) -> Iterator[ManagedProcess]:
    """The KubeRay stand-in (devcluster/kuberay_standin/) modelling KubeRay 1.7, in a subprocess, synced
    before use; it serves every namespace without a `rayqueue.test/kuberay-standin` label."""
    proc = wait_standin_synced(cluster.start_standin())
    yield proc
    cluster.stop_process(proc.name)


@pytest.fixture(scope="session")
def legacy_standin(cluster: LocalCluster) -> Iterator[ManagedProcess]:
    """A second stand-in modelling KubeRay 1.1-1.3 (`<job>-raycluster-<5>` names, no ValidationFailed); it serves
    only the namespaces labelled `rayqueue.test/kuberay-standin=1.3` (see `model_namespace`)."""
    proc = wait_standin_synced(cluster.start_standin("kuberay-standin-1.3", model=MODEL_13))
    yield proc
    cluster.stop_process(proc.name)


@pytest.fixture
def kuberay_model(request: pytest.FixtureRequest) -> str:
    """The KubeRay model a test runs against: "1.7" unless parametrized indirectly
    (`@pytest.mark.parametrize("kuberay_model", KUBERAY_MODELS, indirect=True)`)."""
    return str(getattr(request, "param", MODEL_17))


@pytest.fixture
def model_namespace(cluster: LocalCluster, request: pytest.FixtureRequest, kuberay_model: str) -> Iterator[str]:
    """A fresh namespace (as `namespace`) served by the stand-in of `kuberay_model`, which is started if needed."""
    if kuberay_model == MODEL_13:
        request.getfixturevalue("legacy_standin")
        labels = {keys.TEST_KUBERAY_STANDIN: MODEL_13}
    else:
        request.getfixturevalue("standin")
        labels = {}
    yield from _namespace(cluster, request, labels)


def _namespace(cluster: LocalCluster, request: pytest.FixtureRequest, labels: dict[str, str]) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = cluster.create_namespace(f"{base}-{secrets.token_hex(2)}", labels, tenants=[TENANT])
    yield name
    if request.node.stash.get(_FAILED, False):
        listing = cluster.kubectl("get", "rayjob,raycluster,queueunit,job,pod,event", "-n", name, "-o", "wide",
                                  check=False)
        print(f"----- namespace {name} -----\n{listing.stdout}{listing.stderr}")
    cluster.delete_namespace(name)


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (labelled kubernetes.io/metadata.name), where alice has `edit`.

    On failure its objects and events are printed; it is deleted afterwards (in the background)."""
    yield from _namespace(cluster, request, {})


# --- the whole product on the guide's tree, for the end-to-end modules ----------------------------------------


@pytest.fixture(scope="module")
def rayqueue(cluster: LocalCluster, standin: ManagedProcess) -> Iterator[tuple[Webhook, Extender, ManagedProcess]]:
    """The whole product on the local cluster, with the guide's tree."""
    install_seed_tree(cluster, (TENANT,), tree=False)
    hook = start_webhook(cluster, name="rayqueue-webhook-e2e", extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
    extender = scheduler = None
    try:
        install_seed_tree(cluster, tree=True)  # through the webhook's validation
        extender = start_extender(cluster)
        scheduler = start_rayqueue_scheduler(cluster, extender)
        wait_for(lambda: len(queues(cluster)) == 5, 30.0, "one Queue per leaf of the guide's tree")
        yield hook, extender, scheduler
    finally:
        if scheduler is not None:
            cluster.stop_scheduler(SCHEDULER_NAME)
        if extender is not None:
            cluster.stop_process(extender.process.name)
        stop_webhook(cluster, hook)
        remove_seed_tree(cluster)


@pytest.fixture
def nodes(cluster: LocalCluster) -> Iterator[Callable[..., str]]:
    """Make fake nodes for one test; they are deleted after it."""
    made: list[str] = []

    def make(name: str, cpu: str = "8", memory: str = "32Gi") -> str:
        cluster.create_node(name, cpu=cpu, memory=memory)
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.delete_node(name)


@pytest.fixture
def invariants(cluster: LocalCluster) -> Iterator[QuotaSampler]:
    """Sample the quota invariants throughout the test; assert on the worst value seen at its end."""
    with QuotaSampler(cluster.api_client) as sampler:
        yield sampler
    sampler.check()


@pytest.fixture
def cleanup(cluster: LocalCluster) -> Iterator[None]:
    """Delete every RayJob and pod of the tree's namespaces after a test, and wait until they are gone."""
    yield
    delete_and_wait(cluster, "rayjob,pod", "rayjob,pod", "the test's RayJobs and pods to be gone")


@pytest.fixture
def seed_model(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The KubeRay model serving the guide tree's namespaces for one test: "1.7" (the session's stand-in) unless
    parametrized indirectly with "1.3", which labels those namespaces for the 1.1-1.3 stand-in meanwhile.
    Request it before `cleanup` (set up first, torn down last): the test's objects must be gone, their
    finalizers removed by the stand-in that serves them, before the namespaces change hands."""
    model = str(getattr(request, "param", MODEL_17))
    if model == MODEL_13:
        request.getfixturevalue("legacy_standin")
    label = f"{keys.TEST_KUBERAY_STANDIN}={model}"
    for ns in TREE_NAMESPACES:
        cluster.kubectl("label", "namespace", ns, label, "--overwrite")
    yield model
    for ns in TREE_NAMESPACES:
        cluster.kubectl("label", "namespace", ns, f"{keys.TEST_KUBERAY_STANDIN}-", check=False)
