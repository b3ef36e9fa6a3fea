"""The command-line parsing both services share (common/cli_settings.py): every problem listed, once each."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.cli_settings import SettingsError, check_files, check_positive, launch, load_file, split_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0.0.0.0:8443", ("0.0.0.0", 8443), id="an address and a port"),
        pytest.param(":80", ("0.0.0.0", 80), id="no host listens on every address"),
        pytest.param("[::1]:9000", ("::1", 9000), id="an IPv6 host loses its brackets"),
    ],
)
def test_a_listen_address_is_split_into_host_and_port(value: str, expected: tuple[str, int]) -> None:
    problems: list[str] = []
    assert split_host_port(value, problems) == expected
    assert problems == []


@pytest.mark.parametrize("value", ["8443", "host:", "host:0", "host:65536", "host:http"])
def test_a_listen_address_without_a_usable_port_is_a_problem(value: str) -> None:
    problems: list[str] = []
    assert split_host_port(value, problems) == ("", 0)
    assert problems == [f"--listen {value!r}: expected HOST:PORT with a port in 1..65535"]


def test_every_missing_file_and_non_positive_duration_is_listed(tmp_path: Path) -> None:
    there = tmp_path / "cert.pem"
    there.write_text("x")
    problems: list[str] = []
    check_files(problems, ("--tls-cert", str(there)), ("--tls-key", "/nope"), ("--kubeconfig", None))
    check_positive(problems, ("--resync", 0.0), ("--gang-timeout", 1.5), ("--backoff-base", -1.0))
    assert problems == ["--tls-key '/nope': no such file", "--resync must be positive, got 0.0",
                        "--backoff-base must be positive, got -1.0"]


def test_a_file_is_loaded_as_a_one_tuple_even_when_its_document_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    problems: list[str] = []
    assert load_file("--config", str(empty), lambda handle: handle.read() or None, (), problems) == (None,)
    assert load_file("--config", str(tmp_path / "gone"), lambda handle: handle.read(), (), problems) is None
    assert load_file("--config", str(empty), _refuse, (ValueError,), problems) is None
    assert problems[0].startswith(f"--config {str(tmp_path / 'gone')!r}: cannot read it: [Errno 2]")
    assert problems[1] == f"--config {str(empty)!r}: cannot read it: not a document"


def _refuse(handle: io.TextIOBase) -> object:
    raise ValueError("not a document")


@dataclass(frozen=True)
class _Settings:
    log_level: str


def test_bad_settings_exit_2_naming_the_program_and_every_problem(capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[_Settings] = []
    levels: list[object] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))

    def parse(argv: Sequence[str]) -> _Settings:
        if argv:
            raise SettingsError("--a is bad\n--b is bad")
        return _Settings("WARNING")

    assert launch("rayqueue-x", ["--a"], parse, served.append) == 2
    assert capsys.readouterr().err == "rayqueue-x: bad settings:\n--a is bad\n--b is bad\n"
    assert served == [] and levels == []
    assert launch("rayqueue-x", [], parse, served.append) == 0
    assert served == [_Settings("WARNING")] and levels == ["WARNING"], "logging is set up before serving"
