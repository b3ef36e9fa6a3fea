"""The Ray example of docs/preemption.md reads a real downward-API file: tests/unit/data/podinfo-annotations was
written by Go's own %q, as the kubelet writes `metadata.annotations` (tests/unit/data/downward_annotations.go)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from common import keys
from common.preemption import Notice, issue

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preemption_entrypoint",
                                                  ROOT / "manifests" / "examples" / "preemption" / "entrypoint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _example()


def test_the_example_reads_every_annotation_of_a_real_downward_api_file() -> None:
    annotations = example.parse_annotations((DATA / "podinfo-annotations").read_text())
    assert annotations["ray.io/ft-enabled"] == "false"
    assert annotations["kubectl.kubernetes.io/last-applied-configuration"] == '{"apiVersion":"v1","kind":"Pod"}\n'
    notice = json.loads(annotations[keys.PREEMPTION_NOTICE])
    assert notice["job"] == "intern/big" and notice["deadline"] == "2026-12-02T01:37:44Z"
    assert notice["reason"].endswith("— «quoted» \\ back\tslash")
    assert Notice.parse(annotations[keys.PREEMPTION_NOTICE]).claimant == "algorithm-text/train"


def test_the_example_finds_the_notice_the_controller_writes(tmp_path: Path) -> None:
    """The controller's notice text, written as the kubelet would (Go %q == JSON string escapes for this ASCII
    text), comes back as the same notice; no notice, or no file yet, is None."""
    text = issue(1_800_000_000 * 10**9, 120 * 10**9, "intern/big", "algorithm-text/train", "uid-t",
                 'reclaim "now"').text()
    path = tmp_path / "annotations"
    path.write_text(f'a="b"\n{keys.PREEMPTION_NOTICE}={json.dumps(text)}')
    found = example.read_notice(path)
    assert found is not None and Notice.parse(json.dumps(found)) == Notice.parse(text)
    now = dt.datetime.fromtimestamp(1_800_000_000, dt.UTC)
    assert example.seconds_left(found, now) == pytest.approx(120.0)
    path.write_text('a="b"')
    assert example.read_notice(path) is None
    assert example.read_notice(tmp_path / "missing") is None
