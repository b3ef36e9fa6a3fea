"""The extender's settings mirror the KubeRay operator's: what it adds to pods is charged, its batch-scheduler
mode is refused at start with the setting to remove."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.rayjob import JobInfo
from common.resources import Resources
from extender.settings import SettingsError, parse_settings
from tests.unit.builders import container, make_rayjob


def config_file(tmp_path: Path, **fields: object) -> str:
    path = tmp_path / "kuberay.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "config.ray.io/v1alpha1", "kind": "Configuration", **fields}))
    return str(path)


def test_the_operator_s_sidecars_and_init_container_setting_reach_every_job_s_request(tmp_path: Path) -> None:
    path = config_file(tmp_path, headSidecarContainers=[container("log", cpu="100m", memory="64Mi")],
                       workerSidecarContainers=[container("log", cpu="100m", memory="64Mi")])
    settings = parse_settings(["--no-leader-elect", f"--kuberay-config={path}", "--no-kuberay-init-container-injection"])
    job = JobInfo.from_rayjob(make_rayjob("j", "ns").head(cpu="1").workers(2, cpu="100m").obj(),
                              additions=settings.kuberay_additions)
    assert job.head_request == Resources({"cpu": 1100, "memory": 64 * 2**20})
    assert job.worker_groups[0].pod_request == Resources({"cpu": 200, "memory": 64 * 2**20}), "no wait-gcs-ready"


def test_by_default_kuberay_s_own_defaults_are_expected() -> None:
    additions = parse_settings(["--no-leader-elect"]).kuberay_additions
    assert additions.worker_init_container and not additions.head_sidecars and not additions.worker_sidecars


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        pytest.param({"batchScheduler": "volcano"}, "batchScheduler: volcano (flag --batch-scheduler=volcano)",
                     id="batchScheduler is refused, naming the setting"),
        pytest.param({"enableBatchScheduler": True}, "enableBatchScheduler: true (flag --enable-batch-scheduler)",
                     id="the deprecated enableBatchScheduler is refused too"),
    ],
)
def test_kuberay_s_batch_scheduler_mode_refuses_to_start(tmp_path: Path, fields: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(["--no-leader-elect", f"--kuberay-config={config_file(tmp_path, **fields)}"])
    message = str(caught.value)
    assert "KubeRay's batch-scheduler mode is on (" + named + ")" in message
    assert "Remove it from the KubeRay operator's Configuration" in message


def test_an_unreadable_operator_config_is_refused_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError, match=r"--kuberay-config '.*nope.yaml': cannot read it"):
        parse_settings(["--no-leader-elect", f"--kuberay-config={missing}"])
