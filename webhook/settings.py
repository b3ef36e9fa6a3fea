"""The webhook's settings: one frozen value, parsed and validated once in __main__ (every problem listed)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from certs.authority import CertsError, create_ca, create_serving
from certs.selfmanaged import Policy, policy_problems
from common.cli_settings import (
    SettingsError,
    add_kubeconfig,
    add_log_level,
    add_repeated,
    add_seconds,
    check_files,
    load_file,
    raise_problems,
    split_host_port,
)
from common.kuberay_config import OperatorConfig, checked
from common.kuberay_gates import GATE_FIELDS, KUBERNETES_WAS_PROBLEM, parse_feature_gates
from webhook.policy import PolicyConfig
from webhook.selfcert import SelfCertSettings

__all__ = ["Settings", "SettingsError", "parse_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    kubeconfig: str | None
    host: str
    port: int
    tls_cert: str | None  # --cert-management=files: the mounted pair
    tls_key: str | None
    namespace: str
    policy: PolicyConfig
    max_body_bytes: int
    log_level: str
    access_log: bool = False  # aiohttp's line per request; off unless --access-log
    kuberay: OperatorConfig | None = None  # the KubeRay operator's Configuration, with --kuberay-config
    certs: SelfCertSettings | None = None  # --cert-management=self (the default without --tls-cert)


_GATES = GATE_FIELDS
_feature_gates = parse_feature_gates


def read_kuberay_config(path: str, problems: list[str]) -> OperatorConfig | None:
    """Read and check KubeRay's Configuration file. Batch-scheduler mode is a problem: KubeRay then writes a
    batch scheduler's name into every Ray and submitter pod, which rayqueue refuses, so no job would start."""
    found = load_file("--kuberay-config", path, yaml.safe_load, (yaml.YAMLError,), problems)
    return checked(found[0], f"--kuberay-config {path!r}", problems) if found is not None else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rayqueue-webhook", description="rayqueue admission webhook (HTTPS)")
    add_kubeconfig(p)
    p.add_argument("--listen", default="0.0.0.0:8443", help="HOST:PORT to serve on (default %(default)s)")
    p.add_argument("--cert-management", choices=["self", "files"], default=None,
                   help="self: create, inject and rotate the serving certificate in the Secret --cert-secret (the "
                        "default without --tls-cert; --tls-cert/--tls-key are then ignored); files: serve "
                        "--tls-cert/--tls-key (cert-manager, rayqueue-certs; the default with --tls-cert)")
    p.add_argument("--tls-cert", default=None, help="files: serving certificate (PEM); reloaded when it changes")
    p.add_argument("--tls-key", default=None, help="files: serving key (PEM); reloaded when it changes")
    _add_self_managed(p)
    p.add_argument("--namespace", default="rayqueue", help="rayqueue's own namespace (default %(default)s)")
    add_repeated(p, "--controller-user", "USER",
                 "identity allowed to resume queued jobs and write the queue annotations; repeatable "
                 "(default: the extender's service account in --namespace)")
    add_repeated(p, "--binder-user", "USER",
                 "identity allowed to bind pods in quota namespaces; repeatable (default: "
                 "system:kube-scheduler and rayqueue's extender and scheduler service accounts)")
    add_repeated(p, "--admin-group", "GROUP", "group trusted like the controller; repeatable (default: system:masters)")
    p.add_argument("--scheduler-name", default=None,
                   help="the rayqueue scheduler's name, stamped into pods of quota namespaces")
    add_seconds(p, "--enqueue-tolerance", 10.0, "a client's enqueue stamp closer to now than this is kept (default %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=3 * 1024 * 1024, help="request body limit")
    add_log_level(p)
    p.add_argument("--kuberay-config", default=None, metavar="PATH",
                   help="the KubeRay operator's Configuration file (config.ray.io/v1alpha1, the file it reads with "
                        "--config); checked at start: KubeRay's batch-scheduler mode is refused")
    p.add_argument("--kuberay-feature-gates", default="", metavar="GATE=BOOL,...",
                   help="the KubeRay operator's --feature-gates that change its validation "
                        f"({', '.join(sorted(_GATES))}); default: KubeRay v1.7's defaults")
    p.add_argument("--access-log", action="store_true",
                   help="log a line per HTTP request (aiohttp's access log, at INFO); off by default: the "
                        "request metrics count every admission, and denials and audits are logged anyway")
    return p


def _add_self_managed(p: argparse.ArgumentParser) -> None:
    g = p  # the self-managed certificate's flags (--cert-management=self); the durations are for tests
    g.add_argument("--cert-secret", default="rayqueue-webhook-tls", help="the Secret in --namespace (default %(default)s)")
    g.add_argument("--webhook-configuration", default="rayqueue",
                   help="the Mutating- and ValidatingWebhookConfiguration whose caBundle is set (default %(default)s)")
    g.add_argument("--cert-service", default="rayqueue-webhook", help="the Service the certificate names")
    add_repeated(g, "--cert-dns-name", "NAME", "one more DNS name in the certificate; repeatable")
    add_repeated(g, "--cert-ip", "IP", "an IP address in the certificate (a webhook called by URL); repeatable")
    d = Policy()
    for flag, default in (("--cert-ca-validity", d.ca_validity), ("--cert-validity", d.serving_validity),
                          ("--cert-ca-renew-before", d.ca_renew_before), ("--cert-renew-before", d.serving_renew_before),
                          ("--cert-overlap", d.overlap)):
        add_seconds(g, flag, default.total_seconds(), "(default %(default)s)")
    add_seconds(g, "--cert-check-interval", SelfCertSettings().check_interval,
                "seconds between looks at the Secret and the configurations (default %(default)s)")


def _self_managed(args: argparse.Namespace, problems: list[str]) -> SelfCertSettings | None:
    mode = args.cert_management or ("files" if args.tls_cert or args.tls_key else "self")
    if mode == "files":
        for flag, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
            if not value:
                problems.append(f"{flag} is required with --cert-management=files")
        return None
    args.tls_cert = args.tls_key = None  # unused with self: the Deployment passes them for either mode
    secs = dt.timedelta
    policy = Policy(service=args.cert_service, namespace=args.namespace, extra_dns=tuple(args.cert_dns_name or ()),
                    ips=tuple(args.cert_ip or ()), ca_validity=secs(seconds=args.cert_ca_validity),
                    serving_validity=secs(seconds=args.cert_validity),
                    ca_renew_before=secs(seconds=args.cert_ca_renew_before),
                    serving_renew_before=secs(seconds=args.cert_renew_before), overlap=secs(seconds=args.cert_overlap))
    problems += [f"--cert-*: {p}" for p in policy_problems(policy)]
    if args.cert_check_interval <= 0 or secs(seconds=args.cert_check_interval) * 2 > policy.overlap:
        problems.append(f"--cert-check-interval {args.cert_check_interval} must be positive and at most half of "
                        f"--cert-overlap {args.cert_overlap}: every replica must look at the Secret within an overlap")
    try:  # names and addresses checked the way the certificate will be made
        now = dt.datetime.now(dt.UTC)
        create_serving(create_ca(now=now), service=policy.service, namespace=policy.namespace, now=now,
                       validity=secs(days=1), extra_dns=policy.extra_dns, ips=policy.ips)
    except CertsError as exc:
        problems += [f"--cert-*: {p}" for p in exc.problems]
    return SelfCertSettings(secret=args.cert_secret, configuration=args.webhook_configuration, policy=policy,
                            check_interval=args.cert_check_interval)


def parse_settings(argv: Sequence[str]) -> Settings:
    args = parser().parse_args(list(argv))
    problems: list[str] = []
    host, port = split_host_port(args.listen, problems)
    certs = _self_managed(args, problems)
    check_files(problems, ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key), ("--kubeconfig", args.kubeconfig))
    if args.enqueue_tolerance < 0:
        problems.append("--enqueue-tolerance must not be negative")
    if args.max_body_bytes < 1024:
        problems.append("--max-body-bytes must be at least 1024")
    gates = _feature_gates(args.kuberay_feature_gates, problems)
    if gates.kubernetes_was:
        problems.append(KUBERNETES_WAS_PROBLEM)
    kuberay = read_kuberay_config(args.kuberay_config, problems) if args.kuberay_config else None
    raise_problems(problems)
    ns = args.namespace
    policy = PolicyConfig(
        controller_users=frozenset(args.controller_user or [f"system:serviceaccount:{ns}:rayqueue-extender"]),
        binder_users=frozenset(args.binder_user or [
            "system:kube-scheduler", f"system:serviceaccount:{ns}:rayqueue-extender",
            f"system:serviceaccount:{ns}:rayqueue-scheduler"]),
        admin_groups=frozenset(args.admin_group or ["system:masters"]),
        scheduler_name=args.scheduler_name,
        enqueue_tolerance_ns=int(args.enqueue_tolerance * 10**9),
        kuberay_gates=gates,
    )
    return Settings(kubeconfig=args.kubeconfig, host=host, port=port, tls_cert=args.tls_cert,
                    tls_key=args.tls_key, namespace=ns, policy=policy, max_body_bytes=args.max_body_bytes,
                    log_level=args.log_level, access_log=args.access_log, kuberay=kuberay, certs=certs)
