# rayqueue: one image, its entry points (rayqueue-webhook, rayqueue-extender, rayqueue-certs, and the kubectl
# plugin kubectl-rayqueue, which is also installed with the package on a workstation); the
# Deployments in manifests/ choose one with `command:`. Build with `make image` (Docker or Podman).
#
# Two stages: `build` makes wheels of the project and its dependencies and installs them into a virtualenv
# at /opt/rayqueue; the final stage is a fresh slim Python with only that virtualenv copied in: no pip, no
# setuptools, no compiler, no package lists, no source tree. The same base image in both stages, so the
# virtualenv's interpreter path (/usr/local/bin/python3.11) exists in the final one.
# Pin the base by digest for reproducible builds: make image PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every runtime dependency (aiohttp, orjson, cryptography, ...) ships manylinux wheels for CPython 3.11 on
# amd64 and arm64, so no compiler is needed even here; a platform without them fails loudly at this step.
COPY pyproject.toml README.md ./
COPY common ./common
COPY kubeio ./kubeio
COPY webhook ./webhook
COPY extender ./extender
COPY certs ./certs
COPY rayqueue_cli ./rayqueue_cli
RUN python -m pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/rayqueue \
 && /opt/rayqueue/bin/pip install --no-index --find-links /wheels rayqueue \
 && /opt/rayqueue/bin/python -m compileall -q /opt/rayqueue/lib \
 && /opt/rayqueue/bin/pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
# 65532:65532, the uid/gid the Deployments' securityContext runs as (runAsNonRoot needs a numeric USER).
RUN groupadd --system --gid 65532 rayqueue \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin rayqueue
COPY --from=build /opt/rayqueue /opt/rayqueue
ENV PATH=/opt/rayqueue/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
# The entry points exist and import, as the user the pods run as.
RUN rayqueue-webhook --help >/dev/null && rayqueue-extender --help >/dev/null && rayqueue-certs --help >/dev/null \
 && kubectl-rayqueue --help >/dev/null
LABEL org.opencontainers.image.title="rayqueue" \
      org.opencontainers.image.description="Quota-aware queueing and gang placement of KubeRay RayJobs" \
      org.opencontainers.image.licenses="Apache-2.0"
EXPOSE 8443 8888
CMD ["rayqueue-extender", "--help"]
