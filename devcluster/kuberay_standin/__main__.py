"""`python -m devcluster.kuberay_standin --kubeconfig K [--model 1.3] [--config F]`: run it until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import config

import devcluster.kuberay_standin as package
from devcluster.kuberay_standin.names import (
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_RUN_SECONDS,
    MODEL_17,
    MODELS,
    TEST_KUBERAY_STANDIN,
    TEST_RUN_SECONDS,
)
from devcluster.kuberay_standin.operator_config import OperatorConfig
from devcluster.kuberay_standin.standin import KubeRayStandIn

log = logging.getLogger("kuberay-standin")


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, start the stand-in, and run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m devcluster.kuberay_standin",
                                     description=(package.__doc__ or "").splitlines()[0] or None)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the identity to act as")
    parser.add_argument("--model", choices=MODELS, default=MODEL_17, help="which KubeRay to model (default 1.7)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a KubeRay operator Configuration file (config.ray.io/v1alpha1), YAML")
    parser.add_argument("--default-run-seconds", type=float, default=DEFAULT_RUN_SECONDS,
                        help=f"run time of a RayJob without the {TEST_RUN_SECONDS} annotation")
    parser.add_argument("--max-backoff-seconds", type=float, default=DEFAULT_MAX_BACKOFF_SECONDS,
                        help="cap of the retry backoff after a failed RayCluster pass")
    parser.add_argument("--namespace", default=None, help="watch only this namespace (default: all)")
    parser.add_argument("--serve-label", default=None,
                        help=f"serve the namespaces labelled {TEST_KUBERAY_STANDIN}=<this> (default: the model)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    try:
        operator_config = OperatorConfig.load(args.config, os.environ)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        parser.error(f"--config {args.config}: {exc}")
    new_client: Any = config.new_client_from_config
    api = new_client(config_file=args.kubeconfig)
    standin = KubeRayStandIn(api, model=args.model, operator_config=operator_config,
                             default_run_seconds=args.default_run_seconds,
                             max_backoff_seconds=args.max_backoff_seconds, namespace=args.namespace,
                             serve_label=args.serve_label)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    standin.start()
    log.info("KubeRay stand-in started (TEST ONLY): model %s, serving %s=%s, batch scheduler %r, init container "
             "injection %s, %d head / %d worker sidecars", args.model, TEST_KUBERAY_STANDIN, standin.serve_label,
             operator_config.batch_scheduler, operator_config.init_container_injection,
             len(operator_config.head_sidecars), len(operator_config.worker_sidecars))
    if standin.wait_synced(60.0):
        log.info("caches synced")
    while not done.wait(1.0):
        pass
    log.info("stopping")
    try:
        standin.stop(timeout=10.0)
    finally:
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
