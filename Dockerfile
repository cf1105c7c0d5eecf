# The gateway's container image.
#
#   docker build -t llm-gateway .
#   docker run --rm -p 8080:8080 -v "$PWD/config.yaml:/etc/gateway/config.yaml:ro" llm-gateway
#
# Two stages on the same pinned base: `build` installs the hash-locked runtime dependencies
# (requirements.lock, wheels only: no compiler needed) and the gateway itself into the venv /opt/venv;
# the final stage copies that venv and nothing else: no build tools, no pip cache, no test extras.
# Both locks are made with uv (0.13.9) at the repo root; the exact commands are in their headers.
# The tests in tests/deploy/test_dockerfile.py check this file, the locks and .dockerignore.

FROM python:3.11.17-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first (their layer is reused while the locks do not change). /opt/build-tools holds the
# hash-locked setuptools that builds the gateway's wheel; /opt/venv, created without pip, gets only
# the runtime dependencies.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements-build.lock \
    && python -m venv --without-pip /opt/venv \
    && /opt/build-tools/bin/pip --python /opt/venv/bin/python install \
        --require-hashes --no-deps --only-binary=:all: -r requirements.lock

# The gateway itself, without its dependencies (they all come from the lock above).
COPY pyproject.toml ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY policies ./policies
RUN /opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/build-tools/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /tmp/dist/*.whl \
    && /opt/build-tools/bin/pip --python /opt/venv/bin/python check


FROM python:3.11.17-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# A fixed uid/gid (10001; the Helm chart runs as it too). /var/lib/gateway is the working directory,
# so the config's relative events.sqlite_path and events.spool_dir land there, writable by the user.
RUN groupadd --gid 10001 gateway \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /var/lib/gateway --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/gateway /var/lib/gateway/spool \
    && chown -R 10001:10001 /var/lib/gateway

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/gateway
USER 10001:10001

# Inside the container the gateway always listens on 0.0.0.0:8080 (the flags below override
# server.host/port of the mounted config, whose example binds 127.0.0.1); publish it with -p.
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]

# The config is mounted at /etc/gateway/config.yaml (a file, or a ConfigMap volume at /etc/gateway).
ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/gateway/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
