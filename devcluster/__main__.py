"""`python -m devcluster up|down|env [--dir DIR]`: a local control plane for humans and the demo (state in DIR)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from devcluster import procs
from devcluster.cluster import ADMIN, LocalCluster, ensure_binaries, stop_from_state


def _running(workdir: Path) -> list[str]:
    state = workdir / "state.json"
    if not state.is_file():
        return []
    records = json.loads(state.read_text()).get("processes", [])
    return [f"{r['name']} (pid {r['pid']})" for r in records if procs.pid_runs(int(r["pid"]), r["argv"][0])]


def up(workdir: Path, nodes: int, cpu: str, memory: str, gpus: int, scheduler: bool, standin: bool) -> int:
    """Start etcd, kube-apiserver, kube-controller-manager (+ scheduler, stand-in, fake nodes), detached."""
    running = _running(workdir)
    if running:
        print(f"already up in {workdir}: {', '.join(running)}; run `python -m devcluster down` first", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cluster = LocalCluster(ensure_binaries(), workdir.resolve(), detached=True)
    cluster.start()
    try:
        extra = {"nvidia.com/gpu": str(gpus)} if gpus else None
        for i in range(1, nodes + 1):
            cluster.create_node(f"node-{i}", cpu=cpu, memory=memory, extra_resources=extra)
        if scheduler:
            cluster.start_scheduler()
        if standin:
            cluster.start_standin()
        cluster.save_state()
    except BaseException:
        print(cluster.log_tails(), file=sys.stderr)
        stop_from_state(cluster.workdir)
        raise
    finally:
        cluster.close_client()
    print(f"up in {cluster.startup_seconds:.1f}s: {cluster.server} (logs in {cluster.log_dir})", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.admin_kubeconfig}")
    return 0


def down(workdir: Path, purge: bool) -> int:
    """Stop what `up` started (apiserver before etcd), by PID."""
    if not (workdir / "state.json").is_file():
        print(f"nothing to stop in {workdir}", file=sys.stderr)
        return 0
    for line in stop_from_state(workdir):
        print(f"stopped {line}", file=sys.stderr)
    if purge:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def env(workdir: Path, user: str) -> int:
    """Print `export KUBECONFIG=...` for `user`."""
    path = workdir.resolve() / "kubeconfigs" / f"{user}.kubeconfig"
    if not path.is_file():
        print(f"no kubeconfig for {user!r} in {workdir}: is the cluster up?", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".demo"), help="state directory (default ./.demo)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the control plane, fake nodes, a scheduler and the KubeRay stand-in")
    p_up.add_argument("--nodes", type=int, default=4)
    p_up.add_argument("--node-cpu", default="32")
    p_up.add_argument("--node-memory", default="64Gi")
    p_up.add_argument("--node-gpus", type=int, default=4)
    p_up.add_argument("--no-scheduler", action="store_true", help="do not start the default kube-scheduler")
    p_up.add_argument("--no-standin", action="store_true", help="do not start the KubeRay stand-in")
    p_down = sub.add_parser("down", help="stop everything `up` started")
    p_down.add_argument("--purge", action="store_true", help="also delete the state directory")
    p_env = sub.add_parser("env", help="print `export KUBECONFIG=...`")
    p_env.add_argument("--user", default=ADMIN, help="admin (default) or alice")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.dir, args.nodes, args.node_cpu, args.node_memory, args.node_gpus,
                  not args.no_scheduler, not args.no_standin)
    if args.command == "down":
        return down(args.dir, args.purge)
    return env(args.dir, args.user)


if __name__ == "__main__":
    sys.exit(main())
