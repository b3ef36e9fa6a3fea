"""Command-line parsing the services share: common flags, durations, files, and every problem listed at once."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, Protocol, TypeVar

__all__ = ["LOG_FORMAT", "SettingsError", "add_kubeconfig", "add_log_level", "add_repeated", "add_seconds",
           "check_files", "check_positive", "launch", "load_file", "raise_problems", "split_host_port"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

T = TypeVar("T")


class SettingsError(ValueError):
    """Bad command line: every problem, one per line."""


def add_kubeconfig(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file; the in-cluster configuration when absent")


def add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def add_seconds(p: argparse.ArgumentParser, flag: str, default: float, help: str | None = None) -> None:
    """A duration flag, in (fractional) seconds."""
    p.add_argument(flag, type=float, default=default, metavar="SECONDS", help=help)


def add_repeated(p: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """A flag given once per value; None when absent, so the caller picks its default."""
    p.add_argument(flag, action="append", default=None, metavar=metavar, help=help)


def split_host_port(value: str, problems: list[str]) -> tuple[str, int]:
    """--listen HOST:PORT (an IPv6 host in brackets; no host: every address), or a problem and ("", 0)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"--listen {value!r}: expected HOST:PORT with a port in 1..65535")
        return "", 0
    return host.strip("[]") or "0.0.0.0", int(port)


def check_files(problems: list[str], *flags: tuple[str, str | None]) -> None:
    """Each (flag, path) given must name a file."""
    for flag, path in flags:
        if path and not os.path.isfile(path):
            problems.append(f"{flag} {path!r}: no such file")


def check_positive(problems: list[str], *flags: tuple[str, float]) -> None:
    """Each (flag, value) must be above zero."""
    for flag, value in flags:
        if value <= 0:
            problems.append(f"{flag} must be positive, got {value}")


def load_file(flag: str, path: str, load: Callable[[IO[str]], T], errors: tuple[type[Exception], ...],
              problems: list[str]) -> tuple[T] | None:
    """The document ``load`` reads from the file, as a 1-tuple (a document may itself be None), or None with the
    problem listed when the file cannot be opened or ``load`` raises one of ``errors``."""
    caught: tuple[type[Exception], ...] = (OSError, *errors)
    try:
        with open(path, encoding="utf-8") as handle:
            return (load(handle),)
    except caught as exc:
        problems.append(f"{flag} {path!r}: cannot read it: {exc}")
        return None


def raise_problems(problems: Sequence[str]) -> None:
    """Raise SettingsError listing every problem, if there is any."""
    if problems:
        raise SettingsError("\n".join(problems))


class _Logged(Protocol):
    @property
    def log_level(self) -> str: ...


S = TypeVar("S", bound=_Logged)


def launch(prog: str, argv: Sequence[str], parse: Callable[[Sequence[str]], S], serve: Callable[[S], None]) -> int:
    """A service's main: parse the settings once (exit 2 listing every problem), set up logging, then serve."""
    try:
        settings = parse(argv)
    except SettingsError as exc:
        print(f"{prog}: bad settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    serve(settings)
    return 0
