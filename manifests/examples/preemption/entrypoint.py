"""A Ray job that cooperates with rayqueue's preemption notice (docs/preemption.md).

It works in steps, and between steps it reads the pod's annotations from a downward-API volume
(``/etc/podinfo/annotations``, kept current by the kubelet). When ``rayqueue.io/preemption-notice`` appears it
saves a checkpoint, acknowledges by setting ``rayqueue.io/checkpointed`` on its RayJob (the notice names it),
then waits to be suspended: exiting successfully instead would make the RayJob Complete, and a complete job is
released, never requeued. When the job is admitted again, it resumes from the checkpoint.

Run as the RayJob's entrypoint on the head pod (``python /home/ray/preemption/entrypoint.py``); the pod's
service account needs ``patch`` on ``rayjobs`` in its namespace (manifests/examples/preemption/rbac.yaml).
Standard library only; the acknowledgement uses the ``kubernetes`` client when it is installed, else ``kubectl``.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NOTICE = "rayqueue.io/preemption-notice"
CHECKPOINTED = "rayqueue.io/checkpointed"
ANNOTATIONS = Path(os.environ.get("PODINFO_ANNOTATIONS", "/etc/podinfo/annotations"))
CHECKPOINT = Path(os.environ.get("CHECKPOINT_DIR", "/mnt/checkpoints")) / "state.json"
STEPS = int(os.environ.get("STEPS", "1000"))


def parse_annotations(text: str) -> dict[str, str]:
    """The downward-API file of ``metadata.annotations``: one ``key="value"`` line per annotation, sorted by
    key, the value quoted the way Go's ``%q`` quotes it (kubernetes pkg/fieldpath FormatMap). Go's escapes
    (``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN``) are a subset of Python's
    string-literal escapes, so ``ast.literal_eval`` reads the quoted part exactly (it evaluates literals only)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, quoted = line.partition("=")
        if not sep or not (quoted.startswith('"') and quoted.endswith('"')):
            continue
        value = ast.literal_eval(quoted)
        if isinstance(value, str):
            out[key] = value
    return out


def read_notice(path: Path = ANNOTATIONS) -> dict[str, Any] | None:
    """The preemption notice on this pod (``deadline``, ``job``, ``claimant``, ``grace``, ``reason``), or None."""
    try:
        annotations = parse_annotations(path.read_text())
    except FileNotFoundError:
        return None
    text = annotations.get(NOTICE)
    if text is None:
        return None
    notice = json.loads(text)
    return notice if isinstance(notice, dict) else None


def seconds_left(notice: dict[str, Any], now: dt.datetime | None = None) -> float:
    deadline = dt.datetime.fromisoformat(str(notice["deadline"]).replace("Z", "+00:00"))
    return (deadline - (now or dt.datetime.now(dt.UTC))).total_seconds()


def acknowledge(job: str) -> None:
    """Set ``rayqueue.io/checkpointed`` on the RayJob ``namespace/name``: rayqueue suspends it at once."""
    namespace, _, name = job.partition("/")
    body = {"metadata": {"annotations": {CHECKPOINTED: dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}}
    try:
        from kubernetes import client, config
    except ImportError:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise RuntimeError("neither the kubernetes client nor kubectl is available to acknowledge") from None
        subprocess.run([kubectl, "patch", "rayjob", name, "-n", namespace, "--type=merge", "-p", json.dumps(body)],
                       check=True)
        return
    config.load_incluster_config()
    client.CustomObjectsApi().patch_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", name, body)


def load() -> int:
    try:
        return int(json.loads(CHECKPOINT.read_text())["step"])
    except FileNotFoundError:
        return 0


def save(step: int) -> None:
    CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
    tmp = CHECKPOINT.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step}))
    tmp.replace(CHECKPOINT)  # atomic: a suspension in the middle leaves the previous checkpoint


def work(step: int) -> None:
    """One step of real work (with Ray: ``ray.get(train_step.remote(step))``)."""
    time.sleep(1.0)


def main() -> int:
    step = load()
    print(f"starting at step {step}", flush=True)
    while step < STEPS:
        notice = read_notice()
        if notice is not None:
            print(f"preemption notice: {notice['reason']}; {seconds_left(notice):.0f}s left", flush=True)
            save(step)
            acknowledge(str(notice["job"]))
            print(f"checkpointed at step {step}; waiting to be suspended", flush=True)
            while True:  # exiting 0 would complete the RayJob: it would never be requeued
                time.sleep(5)
        work(step)
        step += 1
        if step % 100 == 0:
            save(step)
    save(step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
