"""A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler) and a KubeRay stand-in, for tests and demos."""

from __future__ import annotations
