"""Child processes of the test cluster: started with a log file, stopped by PID (SIGTERM, wait, SIGKILL)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGTERM the child if the parent dies hard (e.g. SIGKILL), so nothing is left running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """One started process: its name, PID, argv and log. `popen` is None when re-read from a state file."""

    name: str
    pid: int
    argv: tuple[str, ...]
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        """True while the process exists and is not a zombie."""
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines of its log."""
        return tail(self.log, lines)

    def to_state(self) -> dict[str, object]:
        """A JSON-able record for `python -m devcluster down`."""
        return {"name": self.name, "pid": self.pid, "argv": list(self.argv), "log": str(self.log)}

    @classmethod
    def from_state(cls, record: Mapping[str, object]) -> ManagedProcess:
        """Inverse of `to_state` (no Popen handle: the process belongs to another Python process)."""
        argv = record["argv"]
        assert isinstance(argv, list)
        return cls(str(record["name"]), int(str(record["pid"])), tuple(str(a) for a in argv), Path(str(record["log"])))


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_runs(pid: int, executable: str) -> bool:
    """True if `pid` is alive and its command line starts with `executable` (guards against PID reuse)."""
    if not pid_alive(pid):
        return False
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return argv0 == executable


def start(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    detached: bool = False,
) -> ManagedProcess:
    """Start `argv` with stdout+stderr appended to `log`, in its own session (a terminal's Ctrl-C reaches
    only us, and we stop children in order). Unless `detached`, the child is also SIGTERMed if we die."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=None if detached else _die_with_parent,
        )
    return ManagedProcess(name, popen.pid, tuple(argv), log, popen)


def stop(proc: ManagedProcess, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL and wait; returns once the PID is gone."""
    if not proc.alive():
        _reap(proc)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    if not _wait_gone(proc, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        if not _wait_gone(proc, 10.0):
            raise RuntimeError(f"process {proc.name} (pid {proc.pid}) survived SIGKILL for 10s")
    _reap(proc)


def _wait_gone(proc: ManagedProcess, timeout: float) -> bool:
    if proc.popen is not None:
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(proc.pid):
            return True
        time.sleep(0.05)
    return not pid_alive(proc.pid)


def _reap(proc: ManagedProcess) -> None:
    if proc.popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=1.0)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ('' if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
