"""Entry point of rayqueue-certs: create, publish, inject and rotate the webhook's certificates."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from certs.authority import (
    DEFAULT_CA_VALIDITY,
    DEFAULT_SERVING_VALIDITY,
    CertsError,
    KeyAlgorithm,
    ca_bundle_pem,
    create_ca,
    create_serving,
    load_certificates,
)
from certs.files import CA_BUNDLE, CA_CERT, TLS_CERT, CertDir, write_atomic
from certs.manifests import OutputFormat, inject_ca_bundle_json, inject_ca_bundle_yaml, render, tls_secret
from certs.rotation import ca_common_name, finish_ca_roll, renew_serving, start_ca_roll
from common.clock import Clock, SystemClock

PROG = "rayqueue-certs"

ROTATION_HELP = textwrap.dedent(
    """\
    Serving certificate renewal (no trust change, no downtime):
      rayqueue-certs rotate --dir DIR                # renews tls.crt/tls.key if they expire within 30 days
      rayqueue-certs secret --dir DIR --name N --namespace NS | kubectl apply -f -
    The webhook reloads the mounted files by itself; no restart is needed.

    CA roll with an overlap bundle (every step is safe to pause at):
      1. rayqueue-certs rotate --dir DIR --roll-ca start
           a new CA signs from now on; the old CA moves to ca-previous.crt;
           ca-bundle.crt = old CA + new CA. tls.crt is untouched (still from the old CA).
      2. rayqueue-certs inject --ca DIR/ca-bundle.crt webhooks.yaml   (or inject-live)
           every apiserver now trusts both CAs. Wait until the change is everywhere.
      3. rayqueue-certs rotate --dir DIR --force ; rayqueue-certs secret ... | kubectl apply -f -
           the serving certificate now comes from the new CA, which clients already trust.
      4. rayqueue-certs rotate --dir DIR --roll-ca finish
           ca-bundle.crt = new CA only (refused while tls.crt is still from the old CA).
      5. inject the bundle again (as in step 2).
    """
)


def _positive_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} days: must be at least 1")
    return value


def _non_negative_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} days: must not be negative")
    return value


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label {text!r} is not KEY=VALUE")
    return key, value


class _ApiFailure(Exception):
    """The cluster refused or could not be reached: not bad input, so exit 1 rather than 2."""


_KEY_TYPES: dict[str, KeyAlgorithm] = {"ecdsa": "ecdsa-p256", "rsa": "rsa-2048"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Certificates for the rayqueue admission webhook: a CA, the serving certificate, "
        "its Secret and the caBundle of the webhook configurations.",
        epilog=ROTATION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser(
        "init",
        help="create a CA and a serving certificate in a directory",
        description="Create DIR/ca.crt, ca.key, ca-bundle.crt, tls.crt and tls.key. Keys are written "
        "with mode 0600, every file atomically.",
    )
    init.add_argument("--service", required=True, help="the webhook's Service name")
    init.add_argument("--namespace", required=True, help="the Service's namespace")
    init.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="directory to write (created 0700)"
    )
    init.add_argument("--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    init.add_argument(
        "--ip", action="append", default=[], metavar="ADDR", help="IP SAN, e.g. 127.0.0.1 (repeatable)"
    )
    init.add_argument(
        "--key-type", choices=sorted(_KEY_TYPES), default="ecdsa", help="ECDSA P-256 (default) or RSA 2048"
    )
    init.add_argument(
        "--ca-days", type=_positive_days, default=DEFAULT_CA_VALIDITY.days, help="CA validity (default 3650)"
    )
    init.add_argument(
        "--days",
        type=_positive_days,
        default=DEFAULT_SERVING_VALIDITY.days,
        help="serving validity (default 365)",
    )
    init.add_argument("--force", action="store_true", help="overwrite existing files")

    secret = sub.add_parser(
        "secret",
        help="print a kubernetes.io/tls Secret from a directory",
        description="A Secret with tls.crt, tls.key and ca.crt (the CA bundle, so it also works during a CA roll).",
    )
    secret.add_argument("--dir", required=True, type=Path, help="directory written by init")
    secret.add_argument("--name", required=True, help="Secret name")
    secret.add_argument("--namespace", required=True, help="Secret namespace")
    secret.add_argument("--label", action="append", default=[], type=_label, metavar="KEY=VALUE")
    secret.add_argument("--format", choices=["yaml", "json"], default="yaml")
    secret.add_argument(
        "--output", type=Path, metavar="FILE", help="write here (mode 0600) instead of stdout"
    )

    inject = sub.add_parser(
        "inject",
        help="set caBundle in webhook configuration manifest files",
        description="Set webhooks[*].clientConfig.caBundle of every MutatingWebhookConfiguration and "
        "ValidatingWebhookConfiguration in each FILE (multi-document YAML, or JSON for *.json), in place. "
        "Other documents are kept byte for byte.",
    )
    inject.add_argument(
        "--ca", required=True, type=Path, metavar="PEM", help="CA bundle, e.g. DIR/ca-bundle.crt"
    )
    inject.add_argument("files", nargs="+", type=Path, metavar="FILE")

    live = sub.add_parser(
        "inject-live",
        help="set caBundle on webhook configurations in a cluster",
        description="Patch caBundle into every webhook of the named configurations through the API.",
    )
    live.add_argument(
        "--ca", required=True, type=Path, metavar="PEM", help="CA bundle, e.g. DIR/ca-bundle.crt"
    )
    live.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: the client's usual lookup)")
    live.add_argument("--context", help="kubeconfig context")
    live.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    live.add_argument("--mutating", action="append", default=[], metavar="NAME")
    live.add_argument("--validating", action="append", default=[], metavar="NAME")

    rotate = sub.add_parser(
        "rotate",
        help="renew the serving certificate, or roll the CA",
        description="Renew tls.crt/tls.key from the current CA when due, or step through a CA roll.",
        epilog=ROTATION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rotate.add_argument("--dir", required=True, type=Path, help="directory written by init")
    rotate.add_argument(
        "--within-days", type=_non_negative_days, default=30, help="renew when expiring within (default 30)"
    )
    rotate.add_argument("--force", action="store_true", help="renew even if not due")
    rotate.add_argument(
        "--days",
        type=_positive_days,
        default=DEFAULT_SERVING_VALIDITY.days,
        help="serving validity (default 365)",
    )
    rotate.add_argument(
        "--ca-days",
        type=_positive_days,
        default=DEFAULT_CA_VALIDITY.days,
        help="new CA validity (--roll-ca start)",
    )
    rotate.add_argument("--roll-ca", choices=["start", "finish"], help="CA roll step (see below)")
    return p


def _cmd_init(args: argparse.Namespace, now: dt.datetime) -> list[str]:
    d = CertDir(args.out)
    if args.out.exists() and not args.out.is_dir():
        raise CertsError([f"--out {args.out} exists and is not a directory"])
    existing = d.existing() if args.out.is_dir() else []
    if existing and not args.force:
        raise CertsError([f"{', '.join(map(str, existing))} already exist: pass --force to overwrite"])
    algorithm = _KEY_TYPES[args.key_type]
    ca_validity, validity = dt.timedelta(days=args.ca_days), dt.timedelta(days=args.days)
    problems = []
    if validity > ca_validity:
        problems.append(
            f"--days {args.days} is longer than --ca-days {args.ca_days}: the serving certificate would outlive its CA"
        )
    try:
        # Validate the serving inputs before creating anything (a CA is cheap, but errors come all at once).
        probe = create_ca(now=now, validity=ca_validity, algorithm=algorithm, common_name=ca_common_name(now))
        serving = create_serving(
            probe,
            service=args.service,
            namespace=args.namespace,
            now=now,
            validity=min(validity, ca_validity),
            extra_dns=args.dns,
            ips=args.ip,
            algorithm=algorithm,
        )
    except CertsError as exc:
        raise CertsError([*problems, *exc.problems]) from None
    if problems:
        raise CertsError(problems)
    args.out.mkdir(mode=0o700, parents=True, exist_ok=True)
    d.write_ca(probe)
    d.write_bundle(ca_bundle_pem([probe.certificate]))
    d.write_serving(serving)
    return [
        f"{d.path(CA_CERT)}: CA serial {probe.serial:x}, expires {probe.not_after:%Y-%m-%d}",
        f"{d.path(TLS_CERT)}: serving serial {serving.serial:x}, expires {serving.not_after:%Y-%m-%d}",
        f"wrote {', '.join(str(p.name) for p in d.existing())} in {args.out}",
    ]


def _cmd_secret(args: argparse.Namespace) -> str | None:
    d = CertDir(args.dir)
    serving = d.load_serving()
    bundle = d.bundle_pem() if d.path(CA_BUNDLE).exists() else d.load_ca().cert_pem()
    load_certificates(bundle, str(d.path(CA_BUNDLE)))
    fmt: OutputFormat = args.format
    text = render(
        tls_secret(
            name=args.name,
            namespace=args.namespace,
            cert_pem=serving.cert_pem(),
            key_pem=serving.key_pem(),
            ca_pem=bundle,
            labels=dict(args.label),
        ),
        fmt,
    )
    if args.output is None:
        return text
    write_atomic(args.output, text.encode(), 0o600)
    return None


def _read_bundle(path: Path) -> bytes:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CertsError([f"--ca {path}: cannot be read: {exc.strerror}"]) from None
    load_certificates(pem, f"--ca {path}")
    return pem


def _cmd_inject(args: argparse.Namespace) -> list[str]:
    pem = _read_bundle(args.ca)
    problems: list[str] = []
    results: list[tuple[Path, str, int, int]] = []
    for path in args.files:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot be read: {exc}")
            continue
        inject = inject_ca_bundle_json if path.suffix == ".json" else inject_ca_bundle_yaml
        try:
            new, hooks = inject(text, pem, str(path))
        except CertsError as exc:
            problems += exc.problems
            continue
        results.append((path, new, hooks, stat.S_IMODE(os.stat(path).st_mode)))
    if problems:  # all files or none: a half-injected set of manifests is worse than none
        raise CertsError(problems)
    for path, new, _, mode in results:
        write_atomic(path, new.encode(), mode)
    return [f"{path}: caBundle set on {hooks} webhook(s)" for path, _, hooks, _ in results]


def _cmd_inject_live(args: argparse.Namespace) -> list[str]:
    if not args.mutating and not args.validating:
        raise CertsError(["inject-live: name at least one --mutating or --validating configuration"])
    if args.in_cluster and (args.kubeconfig or args.context):
        raise CertsError(["inject-live: --in-cluster excludes --kubeconfig and --context"])
    pem = _read_bundle(args.ca)
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.client.exceptions import OpenApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    from certs.live import inject_live

    config: Any = kube_config  # untyped library

    try:
        if args.in_cluster:
            config.load_incluster_config()
            api_client = client.ApiClient()
        else:
            api_client = config.new_client_from_config(
                config_file=str(args.kubeconfig) if args.kubeconfig else None, context=args.context
            )
    except (ConfigException, OSError) as exc:
        raise CertsError([f"inject-live: cannot load the cluster configuration: {exc}"]) from None
    try:
        with api_client:
            return inject_live(api_client, pem, mutating=args.mutating, validating=args.validating)
    except (OpenApiException, HTTPError) as exc:
        raise _ApiFailure(f"inject-live: {type(exc).__name__}: {exc}".strip()) from None


def _cmd_rotate(args: argparse.Namespace, now: dt.datetime) -> list[str]:
    d = CertDir(args.dir)
    if args.roll_ca == "start":
        outcome = start_ca_roll(d, now=now, validity=dt.timedelta(days=args.ca_days))
    elif args.roll_ca == "finish":
        outcome = finish_ca_roll(d)
    else:
        outcome = renew_serving(
            d,
            now=now,
            within=dt.timedelta(days=args.within_days),
            force=args.force,
            validity=dt.timedelta(days=args.days),
        )
    return list(outcome.lines)


def main(argv: Sequence[str] | None = None, *, clock: Clock | None = None) -> int:
    """Run one subcommand; 0 on success, 2 on bad input (every problem printed), 1 on an API failure."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message (or the help)
        return exc.code if isinstance(exc.code, int) else 2
    now = (clock or SystemClock()).now()
    try:
        if args.command == "init":
            out: list[str] = _cmd_init(args, now)
        elif args.command == "secret":
            text = _cmd_secret(args)
            if text is not None:
                sys.stdout.write(text)
            out = [] if text is not None else [f"wrote {args.output}"]
        elif args.command == "inject":
            out = _cmd_inject(args)
        elif args.command == "inject-live":
            out = _cmd_inject_live(args)
        else:
            out = _cmd_rotate(args, now)
    except CertsError as exc:
        for problem in exc.problems:
            print(f"{PROG} {args.command}: error: {problem}", file=sys.stderr)
        return 2
    except _ApiFailure as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    # `secret` prints the manifest on stdout; its notes, like every other command's, go to stderr.
    stream = sys.stderr if args.command == "secret" else sys.stdout
    for line in out:
        print(line, file=stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
