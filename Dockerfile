# smtp-tls-exporter: a small, non-root image.
#
#   docker build -t smtp-tls-exporter .
#   docker run -p 9025:9025 -v "$PWD/config.yaml:/etc/smtp-tls-exporter/config.yaml:ro" \
#       smtp-tls-exporter
#
# Results kept across restarts, on a volume, with a read-only root:
#
#   docker run --read-only -p 9025:9025 -v smtp-tls-results:/var/lib/smtp-tls-exporter \
#       -v "$PWD/config.yaml:/etc/smtp-tls-exporter/config.yaml:ro" smtp-tls-exporter \
#       --config.file=/etc/smtp-tls-exporter/config.yaml \
#       --storage.path=/var/lib/smtp-tls-exporter
#
# No config file is built in: without one mounted the exporter exits 1 and says where it
# looked. Plain Dockerfile syntax, so any builder will do (docker with or without BuildKit,
# podman, buildah). Any Debian-like base with python3 (3.11+) and the python venv module will
# do: --build-arg PYTHON_IMAGE=... The base's trust store (/etc/ssl/certs) is the exporter's
# default for certificate verification, so keep ca-certificates in it.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the exporter installed into a venv, checked, and stripped of pip ---------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# A venv: Debian's system python has no pip and refuses system-wide installs. The runtime
# stage copies it whole, at the same path and on the same base, so its python links hold.
# pip compiles the bytecode at install time, so a read-only root filesystem costs nothing at
# start-up. The example config is checked here and left behind with the sources.
COPY . /src
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install /src \
    && /opt/venv/bin/smtp-tls-exporter --config.file=/src/config.example.yaml --config.check \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: the venv, no compilers, no pip, no config ----------------------------------
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

COPY --from=build /opt/venv /opt/venv

# uid/gid 65532 is what the Helm chart's securityContext expects. The usual --storage.path
# is made here, owned by that user, so a new Docker volume mounted there takes that owner
# and is writable while the root filesystem is read-only.
RUN groupadd --gid 65532 exporter \
    && useradd --uid 65532 --gid 65532 --key UID_MAX=65535 --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin exporter \
    && install --directory --owner 65532 --group 65532 --mode 0750 /var/lib/smtp-tls-exporter

USER 65532:65532
EXPOSE 9025

# Follows the default --web.listen-address (:9025); python, since slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9025/-/healthy', timeout=4)"]

# The documented config path: mount your file there (or a directory over
# /etc/smtp-tls-exporter), or pass another --config.file.
ENTRYPOINT ["smtp-tls-exporter"]
CMD ["--config.file=/etc/smtp-tls-exporter/config.yaml"]
