# syntax=docker/dockerfile:1
# costctx sidecar image. Build: docker build -t costctx:0.1.0 .  Without a Docker engine:
# scripts/build_image.sh (buildah, a debootstrapped bookworm base; it also runs the image).
#
# Reproducible: the base image is pinned by tag and digest, and every Python package (runtime
# dependencies and the build backend) is installed from requirements.lock with its sha256
# hashes. Regenerate the lock with scripts/lock.sh (uv pip compile --universal --generate-hashes:
# markers make it hold for every supported Python) when pyproject.toml's dependencies change;
# scripts/check_lock.py fails until then.
# The digest is the one public references give for this tag (linux/amd64); it could not be
# checked against the registry where this file was written. Override with
# --build-arg PYTHON_IMAGE=... to move to another patch release.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- build: a virtual environment with the locked dependencies and the costctx wheel --------
# (the wheel holds the native codec, compiled here; see the toolchain step below)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src

# Dependencies first: this layer is reused until the lock changes. Wheels only, hashes
# required: nothing is compiled and nothing unpinned can slip in.
# Where the package index is reached through a proxy with its own CA, pass that CA bundle as
# a build secret (--secret id=pip_ca,src=ca.pem; scripts/build_image.sh does): pip trusts it in
# this step only, and it is never written to a layer.
COPY requirements.lock ./
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python -m venv /opt/costctx \
 && /opt/costctx/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock

# The Rust toolchain for the native codec (native/, PyO3 needs rustc >= 1.85), from Debian:
# bookworm's plain rustc is 1.63, its rustc-web/cargo-web are new enough. This stage only:
# the runtime image carries no toolchain.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      rustc-web=1.85.0+dfsg3-1~deb12u3 cargo-web=1.85.0+dfsg3-1~deb12u3 \
 && rm -rf /var/lib/apt/lists/*

# The project as a wheel, built with the locked maturin (no isolated build environment that
# would fetch a newer one): it compiles the extension from native/ (crates as Cargo.lock
# pins them) and packs sidecar/costctx beside it; installed without resolving anything again.
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY native ./native
# maturin's build backend runs the `maturin` command: the venv's bin goes on PATH. Cargo fetches
# the crates through the same proxy as pip, so it trusts the same build secret.
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export CARGO_HTTP_CAINFO=/run/secrets/pip_ca; fi \
 && PATH=/opt/costctx/bin:$PATH /opt/costctx/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
      --wheel-dir /wheels . \
 && /opt/costctx/bin/pip install --no-cache-dir --no-deps /wheels/costctx-*.whl \
 && /opt/costctx/bin/pip uninstall --yes maturin setuptools wheel

# --- runtime: the venv, a default config, an unprivileged user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="costctx" \
      org.opencontainers.image.description="OTLP sidecar that carries one cost-context envelope on every span" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 costctx \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin costctx

COPY --from=build /opt/costctx /opt/costctx
# The default config; in Kubernetes the ConfigMap is mounted over /etc/costctx.
COPY k8s/base/sidecar.yaml /etc/costctx/sidecar.yaml

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the pod (pip already compiled
# the .pyc files at install time).
ENV PATH=/opt/costctx/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
# OTLP/gRPC, OTLP/HTTP, telemetry (/healthz, /readyz, /metrics).
EXPOSE 4317 4318 8888

# For plain Docker; Kubernetes ignores it and uses the Deployment's probes. The slim image
# has no curl, so Python's urllib asks the telemetry port.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/healthz', timeout=2)"]

# costctx is PID 1 (exec form, no shell) and handles SIGTERM itself: it stops accepting,
# releases held spans and drains the sending queue within --grace seconds (default 10),
# then exits 0. Give `docker stop --time` / terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["costctx", "run"]
CMD ["--config", "/etc/costctx/sidecar.yaml"]
