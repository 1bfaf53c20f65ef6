# run-relay: one image, two roles.
#   docker run IMAGE                      -> the ingress: relay api --host 0.0.0.0 --port 8000
#   docker run IMAGE worker               -> an arq worker (metrics on :9108/metrics)
#   docker run IMAGE check                -> worker health probe (exit 0 healthy)
#
# Stage 1 turns the project and every dependency into wheels; stage 2 installs only those
# wheels, offline, into a clean slim image with no compiler, no pip cache and a non-root user.
# Every dependency ships manylinux wheels for CPython 3.11 (amd64 and arm64), so the build
# stage needs no compiler either.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Metadata first so the dependency wheels stay cached while only the source changes.
COPY pyproject.toml README.md ./
COPY relay ./relay
COPY workers ./workers

RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="run-relay" \
      org.opencontainers.image.description="Turns vendors' poll-only job APIs into signed, retried, ordered webhooks." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    RELAY_DATA_DIR=/tmp/relay-data

# A fixed numeric UID/GID so Kubernetes runAsNonRoot / runAsUser can check it without a passwd.
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/relay --create-home \
       --shell /usr/sbin/nologin relay

# Install from the wheels alone (--no-index): nothing is fetched or compiled here, and the
# wheels themselves never land in a layer (bind mount from the build stage).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /home/relay
USER 10001:10001

EXPOSE 8000 9108

# Fits the api role (the default CMD). For a worker container use `--health-cmd "relay check"`
# (or --no-healthcheck); Kubernetes ignores HEALTHCHECK and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["relay"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
