"""The KubeRay operator's settings that change what it creates: sidecars, batch scheduler, init container injection."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster.kuberay_standin.names import (
    BATCH_SCHEDULER_NAMES,
    DEFAULT_STATUS_CHECK_TIMEOUT_SECONDS,
    DEFAULT_TRANSITION_GRACE_PERIOD_SECONDS,
    STATUS_CHECK_TIMEOUT_ENV,
    TRANSITION_GRACE_PERIOD_ENV,
    Obj,
)


@dataclass(frozen=True)
class OperatorConfig:
    """The KubeRay operator's settings that change what it creates (apis/config/v1alpha1 Configuration)."""

    head_sidecars: tuple[Obj, ...] = ()
    worker_sidecars: tuple[Obj, ...] = ()
    batch_scheduler: str = ""  # the --batch-scheduler name, "" for none
    init_container_injection: bool = True  # ENABLE_INIT_CONTAINER_INJECTION
    status_check_timeout_seconds: int = DEFAULT_STATUS_CHECK_TIMEOUT_SECONDS  # RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS
    # RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS
    transition_grace_period_seconds: int = DEFAULT_TRANSITION_GRACE_PERIOD_SECONDS

    @property
    def scheduler_name(self) -> str | None:
        """The schedulerName AddMetadataToChildResource writes, None without a batch scheduler."""
        return BATCH_SCHEDULER_NAMES.get(self.batch_scheduler) if self.batch_scheduler else None

    @classmethod
    def parse(cls, document: Mapping[str, Any] | None, environ: Mapping[str, str]) -> OperatorConfig:
        """A `config.ray.io/v1alpha1` Configuration (main.go:decodeConfig) and the operator's environment;
        raises ValueError listing every problem (config_utils.go:ValidateBatchSchedulerConfig)."""
        doc = dict(document or {})
        problems: list[str] = []
        if doc and (doc.get("apiVersion"), doc.get("kind")) != ("config.ray.io/v1alpha1", "Configuration"):
            problems.append(f"apiVersion/kind must be config.ray.io/v1alpha1 Configuration, got "
                            f"{doc.get('apiVersion')!r}/{doc.get('kind')!r}")
        sidecars: dict[str, tuple[Obj, ...]] = {}
        for field_name in ("headSidecarContainers", "workerSidecarContainers"):
            containers = doc.get(field_name) or []
            if not isinstance(containers, list) or not all(isinstance(c, dict) and c.get("name") for c in containers):
                problems.append(f"{field_name} must be a list of containers, each with a name")
                containers = []
            sidecars[field_name] = tuple(copy.deepcopy(c) for c in containers)
        scheduler = str(doc.get("batchScheduler") or "")
        legacy = bool(doc.get("enableBatchScheduler"))
        if legacy and scheduler:
            problems.append("both feature flags enable-batch-scheduler (deprecated) and batch-scheduler are set. "
                            "Please use batch-scheduler only")
        elif scheduler and scheduler not in BATCH_SCHEDULER_NAMES:
            problems.append(f"scheduler is not supported, name={scheduler}")
        if problems:
            raise ValueError("; ".join(problems))
        # common/pod.go:getEnableInitContainerInjection: only the string "false" (any case) turns it off.
        inject = environ.get("ENABLE_INIT_CONTAINER_INJECTION", "").lower() != "false"
        # rayjob_controller.go:getJobStatusCheckTimeoutSeconds: not an integer, or <= 0, is the default;
        # checkTransitionGracePeriodAndUpdateStatusIfNeeded: only a non-integer is (0 and below are taken).
        check = _atoi(environ.get(STATUS_CHECK_TIMEOUT_ENV))
        grace = _atoi(environ.get(TRANSITION_GRACE_PERIOD_ENV))
        return cls(sidecars["headSidecarContainers"], sidecars["workerSidecarContainers"],
                   "volcano" if legacy else scheduler, inject,
                   check if check is not None and check > 0 else DEFAULT_STATUS_CHECK_TIMEOUT_SECONDS,
                   grace if grace is not None else DEFAULT_TRANSITION_GRACE_PERIOD_SECONDS)

    @classmethod
    def load(cls, path: Path | None, environ: Mapping[str, str]) -> OperatorConfig:
        return cls.parse(yaml.safe_load(path.read_text()) if path else None, environ)


def _atoi(text: str | None) -> int | None:
    """Go's strconv.Atoi: an optional sign and decimal digits only, else None."""
    if text is None:
        return None
    body = text[1:] if text[:1] in "+-" else text
    return int(text) if body.isascii() and body.isdigit() else None
