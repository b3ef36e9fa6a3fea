"""The extender's settings: one frozen value, parsed and validated once in __main__ (every problem listed)."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml

from common.cli_settings import (
    SettingsError,
    add_kubeconfig,
    add_log_level,
    add_seconds,
    check_files,
    check_positive,
    load_file,
    raise_problems,
    split_host_port,
)
from common.kuberay_additions import DEFAULT_ADDITIONS, KubeRayAdditions
from common.kuberay_config import OperatorConfig, additions, checked
from common.kuberay_gates import GATE_FIELDS, KUBERNETES_WAS_PROBLEM, parse_feature_gates
from common.wire import ShapeError

__all__ = ["Settings", "SettingsError", "parse_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    kubeconfig: str | None
    host: str
    port: int
    tls_cert: str | None
    tls_key: str | None
    namespace: str
    leader_elect: bool
    lease_name: str
    identity: str
    gang_timeout: float
    reservation_ttl: float
    backoff_base: float
    backoff_max: float
    resync_seconds: float
    log_level: str
    # what the KubeRay operator adds to the pods it builds (from --kuberay-config,
    # --kuberay-init-container-injection and --kuberay-feature-gates): counted in every job's request
    kuberay_additions: KubeRayAdditions = field(default=DEFAULT_ADDITIONS)
    # leader election, as client-go's LeaseDuration / RenewDeadline / RetryPeriod (kubeio.leader)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rayqueue-extender",
                                description="rayqueue scheduler extender and queue controller (one process, one cache)")
    add_kubeconfig(p)
    p.add_argument("--listen", default="0.0.0.0:8888", help="HOST:PORT for the extender verbs (default %(default)s)")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="... and this key (PEM)")
    p.add_argument("--namespace", default="rayqueue", help="rayqueue's namespace, where the Lease lives")
    p.add_argument("--leader-elect", default=True, action=argparse.BooleanOptionalAction,
                   help="elect one active replica through a Lease (default on)")
    p.add_argument("--lease-name", default="rayqueue-extender")
    p.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS",
                   help="how long a standby waits before taking an unrenewed Lease (default %(default)s)")
    p.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS",
                   help="the leader steps down when it has not renewed its Lease, or its watches have not been "
                        "live, for this long (default %(default)s)")
    p.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS",
                   help="how often the Lease is tried (default %(default)s)")
    p.add_argument("--identity", default=None, help="this replica's name in the Lease (default: the hostname)")
    add_seconds(p, "--gang-timeout", 25.0, "how long a gang member waits at the bind barrier for the rest of its "
                "gang; must stay below the scheduler's extender httpTimeout (default %(default)s)")
    add_seconds(p, "--reservation-ttl", 60.0, "how long a gang's planned placement is held (default %(default)s)")
    add_seconds(p, "--backoff-base", 5.0)
    add_seconds(p, "--backoff-max", 300.0)
    add_seconds(p, "--resync", 30.0, "reconcile at least this often even without changes (default %(default)s)")
    add_log_level(p)
    p.add_argument("--kuberay-config", default=None, metavar="PATH",
                   help="the KubeRay operator's Configuration file (config.ray.io/v1alpha1, the file it reads with "
                        "--config): its head/worker sidecars are counted in every job's request; its "
                        "batch-scheduler mode is refused")
    p.add_argument("--kuberay-init-container-injection", default=True, action=argparse.BooleanOptionalAction,
                   help="mirror of the operator's ENABLE_INIT_CONTAINER_INJECTION (default on, as KubeRay's): "
                        "the wait-gcs-ready init container on every worker")
    p.add_argument("--kuberay-feature-gates", default="", metavar="GATE=BOOL,...",
                   help="the KubeRay operator's --feature-gates, as the webhook's flag: RayClusterHistoryServer and "
                        "RayClusterMTLS add containers whose requests are counted; KubernetesWAS is refused; "
                        f"known: {', '.join(sorted(GATE_FIELDS))} (default: KubeRay v1.7's defaults)")
    return p


def _kuberay(path: str | None, injection: bool, problems: list[str]) -> KubeRayAdditions:
    """The operator's additions; a batch-scheduler mode or an unreadable file is a problem."""
    config: OperatorConfig | None = OperatorConfig(enable_init_container_injection=injection)
    if path:
        found = load_file("--kuberay-config", path, yaml.safe_load, (yaml.YAMLError,), problems)
        if found is None:
            return DEFAULT_ADDITIONS
        config = checked(found[0], f"--kuberay-config {path!r}", problems, enable_init_container_injection=injection)
    if config is None:
        return DEFAULT_ADDITIONS
    try:
        return additions(config)
    except ShapeError as exc:
        problems.extend(f"--kuberay-config {path!r}: {line}" for line in exc.errors)
        return DEFAULT_ADDITIONS


def parse_settings(argv: Sequence[str]) -> Settings:
    args = parser().parse_args(list(argv))
    problems: list[str] = []
    host, port = split_host_port(args.listen, problems)
    if bool(args.tls_cert) != bool(args.tls_key):
        problems.append("--tls-cert and --tls-key go together")
    check_files(problems, ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key), ("--kubeconfig", args.kubeconfig))
    check_positive(problems, ("--gang-timeout", args.gang_timeout), ("--reservation-ttl", args.reservation_ttl),
                   ("--backoff-base", args.backoff_base), ("--resync", args.resync))
    if args.backoff_max < args.backoff_base:
        problems.append(f"--backoff-max {args.backoff_max} is below --backoff-base {args.backoff_base}")
    if args.reservation_ttl <= args.gang_timeout:
        problems.append(f"--reservation-ttl {args.reservation_ttl} must exceed --gang-timeout {args.gang_timeout}: "
                        "a gang's placement must outlive its wait at the bind barrier")
    if not 0 < args.retry_period < args.renew_deadline < args.lease_duration:
        problems.append(f"leader election needs 0 < --retry-period ({args.retry_period}) < --renew-deadline "
                        f"({args.renew_deadline}) < --lease-duration ({args.lease_duration})")
    gates = parse_feature_gates(args.kuberay_feature_gates, problems)
    if gates.kubernetes_was:
        problems.append(KUBERNETES_WAS_PROBLEM)
    kuberay = _kuberay(args.kuberay_config, args.kuberay_init_container_injection, problems).with_gates(gates)
    raise_problems(problems)
    return Settings(
        kubeconfig=args.kubeconfig, host=host, port=port, tls_cert=args.tls_cert,
        tls_key=args.tls_key, namespace=args.namespace, leader_elect=args.leader_elect, lease_name=args.lease_name,
        identity=args.identity or f"{socket.gethostname()}_{os.getpid()}", gang_timeout=args.gang_timeout,
        reservation_ttl=args.reservation_ttl, backoff_base=args.backoff_base, backoff_max=args.backoff_max,
        resync_seconds=args.resync, log_level=args.log_level, kuberay_additions=kuberay,
        lease_duration=args.lease_duration, renew_deadline=args.renew_deadline, retry_period=args.retry_period,
    )
