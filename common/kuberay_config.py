"""The KubeRay operator's settings that change what rayqueue must expect, read from its Configuration file.

KubeRay v1.7.0 reads ``--config FILE``, a ``config.ray.io/v1alpha1`` ``Configuration``
(``ray-operator/apis/config/v1alpha1/configuration_types.go``; ``main.go`` ignores its command-line flags when the
file is given), or, without a file, the same settings as flags. What matters to rayqueue:

* **Batch-scheduler mode** -- ``batchScheduler: <name>`` (flag ``--batch-scheduler=<name>``) or the deprecated
  ``enableBatchScheduler: true`` (flag ``--enable-batch-scheduler``, which means volcano). The operator then
  overwrites ``schedulerName`` on every Ray pod and on the submitter's pod template
  (``batchscheduler/*``: ``AddMetadataToChildResource`` -> ``AddSchedulerNameToObject``; called from
  ``raycluster_controller.go`` for head and workers and from ``rayjob_controller.go`` ``createK8sJobIfNeed``
  for the submitter). The names it writes are in ``BATCH_SCHEDULER_POD_NAMES``.
* ``headSidecarContainers`` / ``workerSidecarContainers``: containers KubeRay adds to every head / worker pod,
  so to every job's request.
* ``ENABLE_INIT_CONTAINER_INJECTION`` is not in the file: KubeRay reads it from its environment
  (``common/pod.go`` ``getEnableInitContainerInjection``: injection unless the value is ``false``, any case),
  so it is given separately.

Pure: the caller parses YAML into a dict (``common`` has no YAML parser) and passes it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from common.kuberay_additions import KubeRayAdditions

__all__ = [
    "BATCH_SCHEDULER_POD_NAMES",
    "CONFIG_API_VERSION",
    "KNOWN_BATCH_SCHEDULERS",
    "ConfigError",
    "OperatorConfig",
    "additions",
    "batch_scheduler_for_pod_scheduler",
    "batch_scheduler_problem",
    "checked",
    "init_container_injection_from_env",
]

CONFIG_API_VERSION: Final = "config.ray.io/v1alpha1"
CONFIG_KIND: Final = "Configuration"
# --batch-scheduler values KubeRay v1.7 accepts (config_utils.go ValidateBatchSchedulerConfig) and the
# schedulerName each writes into pods: volcano -> "volcano", yunikorn -> "yunikorn", kai-scheduler ->
# "kai-scheduler", scheduler-plugins -> "scheduler-plugins-scheduler" (KubeScheduler.Name(), the
# scheduler-plugins chart's default instance name). kai-scheduler exists since v1.5.
BATCH_SCHEDULER_POD_NAMES: Final[Mapping[str, str]] = {
    "volcano": "volcano",
    "yunikorn": "yunikorn",
    "kai-scheduler": "kai-scheduler",
    "scheduler-plugins": "scheduler-plugins-scheduler",
}
KNOWN_BATCH_SCHEDULERS: Final = tuple(sorted(BATCH_SCHEDULER_POD_NAMES))


class ConfigError(ValueError):
    """A Configuration that cannot be read: every problem, one per line."""


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    """The KubeRay operator settings rayqueue cares about. Defaults are KubeRay's (all off, injection on)."""

    batch_scheduler: str = ""
    enable_batch_scheduler: bool = False
    head_sidecar_containers: tuple[Mapping[str, Any], ...] = ()
    worker_sidecar_containers: tuple[Mapping[str, Any], ...] = ()
    enable_init_container_injection: bool = True

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, enable_init_container_injection: bool = True) -> OperatorConfig:
        """From the parsed Configuration document; ConfigError lists everything wrong with it."""
        problems: list[str] = []
        if not isinstance(doc, Mapping):
            raise ConfigError(f"expected a {CONFIG_KIND} object, got {type(doc).__name__}")
        if doc.get("apiVersion") != CONFIG_API_VERSION:
            problems.append(f"apiVersion: expected {CONFIG_API_VERSION!r}, got {doc.get('apiVersion')!r}")
        if doc.get("kind") != CONFIG_KIND:
            problems.append(f"kind: expected {CONFIG_KIND!r}, got {doc.get('kind')!r}")
        batch = doc.get("batchScheduler", "")
        if batch is None:
            batch = ""
        if not isinstance(batch, str):
            problems.append(f"batchScheduler: expected a string, got {type(batch).__name__}")
            batch = ""
        enable = doc.get("enableBatchScheduler", False)
        if enable is None:
            enable = False
        if not isinstance(enable, bool):
            problems.append(f"enableBatchScheduler: expected a boolean, got {type(enable).__name__}")
            enable = False
        sidecars: dict[str, tuple[Mapping[str, Any], ...]] = {}
        for key in ("headSidecarContainers", "workerSidecarContainers"):
            value = doc.get(key) or []
            if not isinstance(value, list):
                problems.append(f"{key}: expected a list of containers, got {type(value).__name__}")
                value = []
            for i, item in enumerate(value):
                if not isinstance(item, Mapping):
                    problems.append(f"{key}[{i}]: expected a container object, got {type(item).__name__}")
            sidecars[key] = tuple(dict(c) for c in value if isinstance(c, Mapping))
        if problems:
            raise ConfigError("\n".join(problems))
        return cls(batch_scheduler=batch, enable_batch_scheduler=enable,
                   head_sidecar_containers=sidecars["headSidecarContainers"],
                   worker_sidecar_containers=sidecars["workerSidecarContainers"],
                   enable_init_container_injection=enable_init_container_injection)

    @property
    def effective_batch_scheduler(self) -> str | None:
        """The batch scheduler KubeRay runs with (schedulermanager.go getSchedulerFactory: the deprecated
        enableBatchScheduler means volcano), or None."""
        if self.enable_batch_scheduler:
            return "volcano"
        return self.batch_scheduler or None

    def batch_scheduler_setting(self) -> str | None:
        """How the operator was told to use a batch scheduler, as the operator's admin wrote it (to remove it),
        or None when batch scheduling is off."""
        if self.enable_batch_scheduler and self.batch_scheduler:
            return (f"batchScheduler: {self.batch_scheduler} and enableBatchScheduler: true "
                    f"(flags --batch-scheduler={self.batch_scheduler} --enable-batch-scheduler)")
        if self.enable_batch_scheduler:
            return "enableBatchScheduler: true (flag --enable-batch-scheduler)"
        if self.batch_scheduler:
            return f"batchScheduler: {self.batch_scheduler} (flag --batch-scheduler={self.batch_scheduler})"
        return None


def batch_scheduler_problem(config: OperatorConfig) -> str | None:
    """Why rayqueue cannot run beside this operator (its batch-scheduler mode is on, naming the setting to
    remove), or None. KubeRay then writes a batch scheduler's name into every Ray and submitter pod, which
    rayqueue refuses in quota namespaces, so no job would ever start."""
    setting = config.batch_scheduler_setting()
    if setting is None:
        return None
    batch = config.effective_batch_scheduler or ""
    pod_name = BATCH_SCHEDULER_POD_NAMES.get(batch, batch)
    return (
        f"KubeRay's batch-scheduler mode is on ({setting}): the operator then "
        f"writes schedulerName {pod_name!r} into every Ray and submitter pod, which rayqueue refuses in quota "
        "namespaces, so no RayJob there could ever start. Remove it from the KubeRay operator's "
        "Configuration (and flags) and restart the operator: rayqueue does the queueing and gang scheduling"
    )


def checked(
    doc: object, source: str, problems: list[str], *, enable_init_container_injection: bool = True
) -> OperatorConfig | None:
    """The operator Configuration `doc` (parsed from `source`, named in every problem) as a service's setting:
    its problems, and a batch-scheduler mode, go into `problems` (then None when it cannot be read)."""
    try:
        config = OperatorConfig.from_dict(doc if isinstance(doc, Mapping) else {},
                                          enable_init_container_injection=enable_init_container_injection)
    except ConfigError as exc:
        problems.extend(f"{source}: {line}" for line in str(exc).splitlines())
        return None
    problem = batch_scheduler_problem(config)
    if problem is not None:
        problems.append(f"{source}: {problem}")
    return config


def additions(config: OperatorConfig) -> KubeRayAdditions:
    """What this operator adds to the pods it builds (its sidecars, the init container): for job requests.
    Raises ShapeError for a sidecar whose resources cannot be read."""
    return KubeRayAdditions.from_operator(
        head_sidecars=config.head_sidecar_containers,
        worker_sidecars=config.worker_sidecar_containers,
        worker_init_container=config.enable_init_container_injection,
    )


def init_container_injection_from_env(value: str | None) -> bool:
    """KubeRay's getEnableInitContainerInjection: on unless ENABLE_INIT_CONTAINER_INJECTION is 'false' (any case)."""
    return (value or "").lower() != "false"


def batch_scheduler_for_pod_scheduler(scheduler_name: str) -> str | None:
    """The --batch-scheduler value that makes KubeRay write this schedulerName into its pods, or None."""
    for batch, pod_name in BATCH_SCHEDULER_POD_NAMES.items():
        if pod_name == scheduler_name:
            return batch
    return None
