"""The KubeRay operator's Configuration: read by common/kuberay_config.py; batch-scheduler mode stops the webhook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.kuberay_config import (
    ConfigError,
    OperatorConfig,
    batch_scheduler_for_pod_scheduler,
    init_container_injection_from_env,
)
from common.kuberay_rules import FeatureGates
from webhook.__main__ import main
from webhook.settings import SettingsError, parse_settings


def configuration(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "config.ray.io/v1alpha1", "kind": "Configuration", **fields}


def argv(tmp_path: Path, *flags: str) -> list[str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    return ["--tls-cert", str(cert), "--tls-key", str(key), *flags]


def config_file(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "kuberay.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_the_operator_configuration_is_read_with_kuberays_defaults() -> None:
    sidecar = {"name": "log-shipper", "image": "fluent-bit", "resources": {"requests": {"cpu": "100m"}}}
    config = OperatorConfig.from_dict(configuration(workerSidecarContainers=[sidecar], metricsAddr=":8080"),
                                      enable_init_container_injection=init_container_injection_from_env("False"))
    assert config == OperatorConfig(worker_sidecar_containers=(sidecar,), enable_init_container_injection=False)
    assert config.effective_batch_scheduler is None and config.batch_scheduler_setting() is None
    assert OperatorConfig.from_dict(configuration()).enable_init_container_injection is True


def test_a_configuration_that_is_not_one_is_refused_with_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        OperatorConfig.from_dict({"apiVersion": "v1", "kind": "ConfigMap", "batchScheduler": 3,
                                  "headSidecarContainers": ["c"]})
    assert str(err.value).splitlines() == [
        "apiVersion: expected 'config.ray.io/v1alpha1', got 'v1'",
        "kind: expected 'Configuration', got 'ConfigMap'",
        "batchScheduler: expected a string, got int",
        "headSidecarContainers[0]: expected a container object, got str",
    ]


@pytest.mark.parametrize(("doc", "effective", "setting"), [
    pytest.param(configuration(batchScheduler="yunikorn"), "yunikorn",
                 "batchScheduler: yunikorn (flag --batch-scheduler=yunikorn)", id="batchScheduler names the scheduler"),
    pytest.param(configuration(enableBatchScheduler=True), "volcano",
                 "enableBatchScheduler: true (flag --enable-batch-scheduler)", id="the deprecated switch means volcano"),
])
def test_batch_scheduler_mode_is_recognised(doc: dict[str, Any], effective: str, setting: str) -> None:
    config = OperatorConfig.from_dict(doc)
    assert config.effective_batch_scheduler == effective
    assert config.batch_scheduler_setting() == setting


def test_the_pod_scheduler_names_kuberay_writes_map_back_to_the_flag() -> None:
    assert batch_scheduler_for_pod_scheduler("scheduler-plugins-scheduler") == "scheduler-plugins"
    assert batch_scheduler_for_pod_scheduler("volcano") == "volcano"
    assert batch_scheduler_for_pod_scheduler("rayqueue-scheduler") is None


def test_the_webhook_refuses_to_start_when_kuberay_runs_a_batch_scheduler(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, configuration(batchScheduler="volcano"))
    with pytest.raises(SettingsError) as err:
        parse_settings(argv(tmp_path, "--kuberay-config", path))
    assert str(err.value) == (
        f"--kuberay-config {path!r}: KubeRay's batch-scheduler mode is on (batchScheduler: volcano (flag "
        "--batch-scheduler=volcano)): the operator then writes schedulerName 'volcano' into every Ray and submitter "
        "pod, which rayqueue refuses in quota namespaces, so no RayJob there could ever start. Remove it from the "
        "KubeRay operator's Configuration (and flags) and restart the operator: rayqueue does the queueing and gang "
        "scheduling")
    assert main(argv(tmp_path, "--kuberay-config", path)) == 2
    assert "--batch-scheduler=volcano" in capsys.readouterr().err


def test_a_clean_kuberay_configuration_and_feature_gates_are_taken(tmp_path: Path) -> None:
    path = config_file(tmp_path, configuration(headSidecarContainers=[{"name": "s", "image": "x"}]))
    settings = parse_settings(argv(tmp_path, "--kuberay-config", path,
                                   "--kuberay-feature-gates", "RayJobDeletionPolicy=false,RayCronJob=true"))
    assert settings.kuberay == OperatorConfig(head_sidecar_containers=({"name": "s", "image": "x"},))
    assert settings.policy.kuberay_gates == FeatureGates(ray_job_deletion_policy=False)
    assert parse_settings(argv(tmp_path)).policy.kuberay_gates == FeatureGates(), "KubeRay v1.7's defaults"


def test_unreadable_kuberay_settings_are_listed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(argv(tmp_path, "--kuberay-config", str(tmp_path / "missing.yaml"),
                            "--kuberay-feature-gates", "RayJobDeletionPolicy"))
    lines = str(err.value).splitlines()
    assert lines[0] == "--kuberay-feature-gates 'RayJobDeletionPolicy': expected GATE=true or GATE=false"
    assert lines[1].startswith(f"--kuberay-config {str(tmp_path / 'missing.yaml')!r}: cannot read it: ")


def test_the_webhook_refuses_to_start_beside_kuberays_kubernetes_was_gate(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """KubeRay v1.7's KubernetesWAS gate gang-schedules every RayCluster with rayqueue's own gang label through a
    PodGroup of its own (AddMetadataToChildResource sets spec.schedulingGroup and default-scheduler): refused at
    start, like the batch-scheduler modes; the gate off is KubeRay's default and is taken."""
    with pytest.raises(SettingsError) as err:
        parse_settings(argv(tmp_path, "--kuberay-feature-gates", "KubernetesWAS=true"))
    assert str(err.value).startswith("--kuberay-feature-gates KubernetesWAS=true: KubeRay's Kubernetes WAS batch "
                                     "scheduler then gang-schedules every RayCluster labelled "
                                     "ray.io/gang-scheduling-enabled")
    assert main(argv(tmp_path, "--kuberay-feature-gates", "KubernetesWAS=true")) == 2
    assert "run the operator without that gate" in capsys.readouterr().err
    assert parse_settings(argv(tmp_path, "--kuberay-feature-gates", "KubernetesWAS=false")).policy.kuberay_gates \
        == FeatureGates()
