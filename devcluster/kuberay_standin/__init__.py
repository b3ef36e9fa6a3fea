"""A TEST STAND-IN for the KubeRay operator (plus a kubelet's pod status duties) for the local test cluster; never for production.

It shares no code with what it tests (rayqueue's common/, extender/, webhook/), on purpose: importing them would hide their bugs.
Its spec, each behaviour with the KubeRay function it follows: docs/standin.md.
"""

from devcluster.kuberay_standin.names import MODEL_13, MODEL_17, MODELS
from devcluster.kuberay_standin.operator_config import OperatorConfig
from devcluster.kuberay_standin.standin import KubeRayStandIn

__all__ = ["MODELS", "MODEL_13", "MODEL_17", "KubeRayStandIn", "OperatorConfig"]
