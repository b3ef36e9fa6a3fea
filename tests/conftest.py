"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# These machines are shared and noisy (2 cores): Hypothesis must judge properties, not how fast examples are
# generated or run. Every property still runs its full number of examples.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")
