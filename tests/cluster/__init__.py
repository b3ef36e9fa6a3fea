"""Tests against a real local control plane (devcluster): marked `cluster`."""
