"""Thin asyncio adapters to the Kubernetes API shared by both services: client, list+watch, events, leases."""
