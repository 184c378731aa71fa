# syntax=docker/dockerfile:1
#
# smtp-tls-exporter: a small, non-root image.
#
#   docker build -t smtp-tls-exporter .
#   docker run -p 9025:9025 -v "$PWD/config.yaml:/etc/smtp-tls-exporter/config.yaml:ro" \
#       smtp-tls-exporter
#
# Any Debian-like base with python3 (3.11+) and the python venv module will do:
# --build-arg PYTHON_IMAGE=... The base's trust store (/etc/ssl/certs) is the exporter's
# default for certificate verification, so keep ca-certificates in it.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: wheels of the exporter and all of its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# pip from a venv: Debian's system python has no pip and refuses system-wide installs.
RUN python3 -m venv /opt/build

COPY . /src
RUN /opt/build/bin/pip wheel --wheel-dir /wheels /src

# --- runtime: the wheels installed into a venv, no compilers, no pip ---------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=""

LABEL org.opencontainers.image.title="smtp-tls-exporter" \
      org.opencontainers.image.description="Prometheus exporter: which TLS versions SMTP servers accept, and when their certificates expire" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# uid/gid 65532 is what the Helm chart's securityContext expects. pip compiles the
# bytecode at install time, so a read-only root filesystem costs nothing at start-up.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --root-user-action=ignore --no-index --find-links=/wheels smtp-tls-exporter \
    && /opt/venv/bin/pip uninstall --yes --root-user-action=ignore pip setuptools \
    && groupadd --gid 65532 exporter \
    && useradd --uid 65532 --gid 65532 --key UID_MAX=65535 --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin exporter

# The documented config path; mount your own file (or directory) over it.
COPY config.example.yaml /etc/smtp-tls-exporter/config.yaml
RUN smtp-tls-exporter --config.file=/etc/smtp-tls-exporter/config.yaml --config.check

USER 65532:65532
EXPOSE 9025

# Follows the default --web.listen-address (:9025); python, since slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9025/-/healthy', timeout=4)"]

ENTRYPOINT ["smtp-tls-exporter"]
CMD ["--config.file=/etc/smtp-tls-exporter/config.yaml"]
