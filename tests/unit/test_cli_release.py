"""`kubectl rayqueue release-queued`: which jobs it releases, leaves or deletes, the guarded patch it sends, the
conflict it re-reads, and the summary it prints."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common import keys
from rayqueue_cli import __main__ as cli
from rayqueue_cli import release
from tests.unit.builders import container, make_rayjob

STAMP = "2025-01-10 01:30:00.000000001 +0000 UTC"
LATER = "2025-01-10 01:31:00 +0000 UTC"
Obj = dict[str, Any]


def apply_json_patch(doc: Obj, ops: list[Obj] | tuple[Obj, ...]) -> Obj:
    """RFC 6902 test/replace/remove, as the apiserver applies them (a failed test raises)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens: list[Any] = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent: Any = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = int(tokens[-1]) if isinstance(parent, list) else tokens[-1]
        if op["op"] == "test":
            assert parent[last] == op["value"], f"test failed at {op['path']}"
        elif op["op"] == "remove":
            del parent[last]
        else:
            assert op["op"] == "replace" and last in parent, op
            parent[last] = op["value"]
    return doc


def queued_job(name: str = "j", namespace: str = "video", *, scheduler: str | None = "rayqueue-scheduler") -> Any:
    job = (make_rayjob(name, namespace).gang().quota("video").enqueued(STAMP)
           .workers(2, cpu="1").set("metadata.resourceVersion", "41"))
    if scheduler is not None:
        job = job.set("spec.rayClusterSpec.headGroupSpec.template.spec.schedulerName", scheduler)
        job = job.set("spec.rayClusterSpec.workerGroupSpecs.0.template.spec.schedulerName", scheduler)
    return job


def test_a_waiting_job_is_resumed_with_every_rayqueue_stamp_and_the_stamped_scheduler_gone() -> None:
    job = (queued_job().annotate(keys.ADMISSION_TIMEOUTS, "3").annotate(keys.PRIORITY_CHANGE_RECORD, "x")
           .annotate(keys.EXPECTED_RUNTIME, "1h").submitter(container("submit")).obj())
    job["spec"]["submitterPodTemplate"]["spec"]["schedulerName"] = "rayqueue-scheduler"
    action = release.plan(job, release.RAYJOB, delete=False, scheduler_name="rayqueue-scheduler")
    assert action is not None
    assert (action.step, action.reason, action.enqueued, action.queue_unit) == (
        "release", "waiting in its queue: resumed unqueued", STAMP, "j-ray-qu")
    assert action.patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    after = apply_json_patch(job, action.patch)
    assert after["spec"]["suspend"] is False
    assert set(after["metadata"]["annotations"]) == {keys.EXPECTED_RUNTIME}, "the user's own annotation stays"
    assert after["metadata"]["labels"] == job["metadata"]["labels"], "labels are left"
    templates = [after["spec"]["rayClusterSpec"]["headGroupSpec"]["template"],
                 *(g["template"] for g in after["spec"]["rayClusterSpec"]["workerGroupSpecs"]),
                 after["spec"]["submitterPodTemplate"]]
    assert [t["spec"].get("schedulerName") for t in templates] == [None, None, None]


def test_a_scheduler_the_tenant_chose_is_kept() -> None:
    job = queued_job(scheduler="default-scheduler").obj()
    action = release.plan(job, release.RAYJOB, delete=False, scheduler_name="rayqueue-scheduler")
    assert action is not None
    after = apply_json_patch(job, action.patch)
    assert after["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["schedulerName"] == "default-scheduler"


def test_a_patch_of_a_job_changed_since_it_was_read_fails_its_test() -> None:
    job = queued_job().obj()
    action = release.plan(job, release.RAYJOB, delete=False, scheduler_name=None)
    assert action is not None
    job["metadata"]["resourceVersion"] = "42"
    with pytest.raises(AssertionError, match="resourceVersion"):
        apply_json_patch(job, action.patch)


@pytest.mark.parametrize(("job", "step", "reason"), [
    pytest.param(queued_job().dequeued(LATER).suspend(False).obj(), "leave",
                 f"admitted at {LATER}, not suspended: it runs on", id="an admitted job is left running"),
    pytest.param(queued_job().dequeued(LATER).obj(), "release", "suspended by a reclaim: resumed unqueued",
                 id="a job suspended by a reclaim not yet requeued is released too"),
    pytest.param(queued_job().dequeued(LATER).suspend(False).status("Complete").obj(), "leave",
                 "finished: nothing to release", id="a finished job is left as it is"),
    pytest.param(make_rayjob("j", "video").obj(), None, None,
                 id="a suspended job rayqueue never queued is not its own"),
    pytest.param(make_rayjob("j", "video").suspend(False).obj(), None, None, id="an unqueued running job is ignored"),
])
def test_what_happens_to_each_kind_of_job(job: Obj, step: str | None, reason: str | None) -> None:
    action = release.plan(job, release.RAYJOB, delete=False, scheduler_name="rayqueue-scheduler")
    assert ((action.step, action.reason) if action else (None, None)) == (step, reason)


def test_with_delete_a_waiting_job_is_deleted_and_an_admitted_one_still_left() -> None:
    waiting = queued_job("a").obj()
    running = queued_job("b").dequeued(LATER).suspend(False).obj()
    actions = release.plan_all([(release.RAYJOB, running), (release.RAYJOB, waiting)], delete=True,
                               scheduler_name=None)
    assert [(a.name, a.step, a.patch) for a in actions] == [("a", "delete", ()), ("b", "leave", ())]


def test_a_bare_raycluster_is_released_at_its_own_paths_and_queue_unit() -> None:
    cluster = queued_job("rc").as_raycluster()
    cluster["metadata"]["annotations"][keys.ADMITTED_REPLICAS] = '{"workers": 2}'
    action = release.plan(cluster, release.RAYCLUSTER, delete=False, scheduler_name="rayqueue-scheduler")
    assert action is not None and action.queue_unit == "rc-rc-qu"
    after = apply_json_patch(cluster, action.patch)
    assert after["spec"]["suspend"] is False
    assert after["metadata"]["annotations"] == {}, "the enqueue stamp and the admitted size are gone"
    assert "schedulerName" not in after["spec"]["workerGroupSpecs"][0]["template"]["spec"]


def test_a_rayjobs_own_raycluster_carrying_the_jobs_stamps_is_not_queued_itself() -> None:
    cluster = queued_job("j-abcde").as_raycluster()
    cluster["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": keys.RAYJOB_KIND, "name": "j",
                                               "uid": "u", "controller": True}]
    assert release.plan(cluster, release.RAYCLUSTER, delete=False, scheduler_name=None) is None


class ApiError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status, self.reason, self.body = status, message, f'{{"message": "{message}"}}'


class FakeCustom:
    """CustomObjectsApi over a dict; `conflicts` makes the next N patches of a name fail with 422 (the test op),
    after bumping the object as a concurrent writer would."""

    def __init__(self, *objs: Obj) -> None:
        self.objs = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): copy.deepcopy(o) for o in objs}
        self.conflicts: dict[str, int] = {}
        self.deleted_units: list[tuple[str, str]] = []
        self.patches = 0

    def _kind(self, plural: str) -> str:
        return {keys.RAYJOB_PLURAL: keys.RAYJOB_KIND, keys.RAYCLUSTER_PLURAL: keys.RAYCLUSTER_KIND}[plural]

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> Obj:
        return {"items": [copy.deepcopy(o) for (k, _, _), o in sorted(self.objs.items()) if k == self._kind(plural)]}

    def list_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str) -> Obj:
        items = self.list_cluster_custom_object(group, version, plural)["items"]
        return {"items": [o for o in items if o["metadata"]["namespace"] == ns]}

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> Obj:
        return copy.deepcopy(self.objs[(self._kind(plural), ns, name)])

    def patch_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str,
                                       body: list[Obj], _content_type: str) -> None:
        assert _content_type == "application/json-patch+json"
        self.patches += 1
        key = (self._kind(plural), ns, name)
        if self.conflicts.get(name):
            self.conflicts[name] -= 1
            obj = self.objs[key]
            obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        try:
            self.objs[key] = apply_json_patch(self.objs[key], body)
        except AssertionError:
            raise ApiError(422, "the server rejected our request due to an error in our request") from None

    def delete_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str,
                                        body: Obj | None = None) -> None:
        if plural == keys.QUEUE_UNIT_PLURAL:
            self.deleted_units.append((ns, name))
            if name.startswith("gone"):
                raise ApiError(404, "not found")
            return
        key = (self._kind(plural), ns, name)
        assert body is not None
        assert body["preconditions"]["resourceVersion"] == self.objs[key]["metadata"]["resourceVersion"]
        del self.objs[key]


def test_a_dry_run_changes_nothing_and_says_how_to_do_it() -> None:
    fake = FakeCustom(queued_job("a").obj(), queued_job("b").dequeued(LATER).suspend(False).obj())
    rep = release.run(fake, namespace=None, delete=False, yes=False, scheduler_name="rayqueue-scheduler")
    assert fake.patches == 0 and not fake.deleted_units
    assert (rep["released"], rep["left"], rep["failed"], rep["dryRun"]) == (1, 1, 0, True)
    assert release.render(rep).splitlines() == [
        f"RayJob video/a: release: waiting in its queue: resumed unqueued (enqueued {STAMP})",
        f"RayJob video/b: leave: admitted at {LATER}, not suspended: it runs on (enqueued {STAMP})",
        "1 would be released, 0 would be deleted, 1 left as they are (admitted or finished), 0 failed",
        "a dry run: nothing was changed; run again with --yes to do it",
    ]


def test_with_yes_every_waiting_job_is_released_its_queue_unit_deleted_across_a_concurrent_write() -> None:
    fake = FakeCustom(queued_job("a").obj(), queued_job("gone", "text").obj(), queued_job("rc").as_raycluster())
    fake.conflicts["a"] = 1
    rep = release.run(fake, namespace=None, delete=False, yes=True, scheduler_name="rayqueue-scheduler")
    assert (rep["released"], rep["failed"]) == (3, 0), release.render(rep)
    assert all(o["spec"]["suspend"] is False and keys.ENQUEUE_TIMESTAMP not in (o["metadata"].get("annotations") or {})
               for o in fake.objs.values())
    assert sorted(fake.deleted_units) == [("text", "gone-ray-qu"), ("video", "a-ray-qu"), ("video", "rc-rc-qu")]
    assert release.render(rep).splitlines()[-1] == (
        "3 were released, 0 were deleted, 0 left as they are (admitted or finished), 0 failed")


def test_a_job_changing_on_every_try_is_reported_failed_not_patched_blind() -> None:
    fake = FakeCustom(queued_job("a").obj())
    fake.conflicts["a"] = 5
    rep = release.run(fake, namespace="video", delete=False, yes=True, scheduler_name=None)
    assert rep["failed"] == 1 and fake.patches == release.CONFLICT_RETRIES
    assert rep["jobs"][0]["outcome"] == "changed 3 times while being released"
    assert fake.objs[(keys.RAYJOB_KIND, "video", "a")]["spec"]["suspend"] is True
    assert "FAILED: changed 3 times" in release.render(rep)


def test_with_delete_the_waiting_jobs_are_deleted_under_their_resource_version() -> None:
    fake = FakeCustom(queued_job("a").obj(), queued_job("b").dequeued(LATER).suspend(False).obj())
    rep = release.run(fake, namespace=None, delete=True, yes=True, scheduler_name=None)
    assert (rep["deleted"], rep["left"], rep["mode"]) == (1, 1, "delete")
    assert list(fake.objs) == [(keys.RAYJOB_KIND, "video", "b")]


def test_nothing_queued_says_so() -> None:
    rep = release.run(FakeCustom(), namespace="video", delete=False, yes=False, scheduler_name=None)
    assert release.render(rep).splitlines() == ["no job queued by rayqueue in namespace video",
                                                "0 would be released, 0 would be deleted, 0 left as they are "
                                                "(admitted or finished), "
                                                "0 failed"]


def test_the_command_exits_2_when_a_job_could_not_be_released_so_an_uninstall_script_stops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCustom(queued_job("a").obj(), queued_job("b").obj())
    fake.conflicts["a"] = 5

    class Api:
        custom = fake

        def __init__(self, kubeconfig: str | None, context: str | None) -> None:
            pass

    monkeypatch.setattr(cli, "Api", Api)
    assert cli.main(["release-queued", "-n", "video", "--yes"]) == cli.PARTIAL_FAILURE
    out = capsys.readouterr().out
    assert "RayJob video/a: release:" in out and "FAILED: changed 3 times" in out
    assert "1 were released" in out and "1 failed" in out
    fake.conflicts.clear()
    assert cli.main(["release-queued", "-n", "video", "--yes"]) == 0, "nothing failed: success"
