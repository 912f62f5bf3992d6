#!/usr/bin/env bash
# Build the costctx image without a Docker engine, then run it and check it (CI runs this).
#  1. A Debian bookworm base from the distribution's packages: debootstrap --variant=minbase
#     with python3, python3-venv, python-is-python3 and passwd, committed as a local image
#     (BASE_IMAGE; kept between runs, rebuilt when missing). It stands in for the Dockerfile's
#     default python:3.11-slim-bookworm, which needs a registry these machines cannot reach.
#  2. The Dockerfile, built by buildah (vfs storage, chroot isolation: no daemon), with the base
#     as PYTHON_IMAGE and, when one is found, an extra CA bundle for a package-index proxy as the
#     build secret `pip_ca` (CA_BUNDLE, default: $PIP_CERT, else $SSL_CERT_FILE, else the
#     system bundle); only the build stage's pip reads it, and no layer keeps it.
#  3. scripts/check_image.py: runs the image's entry point chrooted into its read-only root as
#     its USER, sends spans with the OpenTelemetry SDK, reads them at a sink, stops it.
# Needs root, buildah and debootstrap (Debian packages) and, for step 3, a Python with costctx
# and the OpenTelemetry SDK installed (PYTHON, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/costctx:check}
BASE_IMAGE=${BASE_IMAGE:-localhost/costctx-base:bookworm}
SUITE=bookworm
PY=${PYTHON:-python3}
BUILDAH=(buildah --storage-driver vfs)
CA_BUNDLE=${CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The Debian mirror this host's apt uses (DEBIAN_MIRROR overrides), so the base comes from the
# same place as every other package here.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } | grep -v security | head -n1
}

start=$SECONDS
if "${BUILDAH[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "== base image $BASE_IMAGE: present"
else
    echo "== base image $BASE_IMAGE: debootstrap --variant=minbase $SUITE"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,passwd \
            "$SUITE" "$work/rootfs" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1; then
        tail -n 30 "$work/debootstrap.log"
        exit 1
    fi
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -C "$work/rootfs" -cf "$work/rootfs.tar" .
    rm -rf "$work/rootfs"
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n' >"$work/Containerfile"
    "${BUILDAH[@]}" bud --isolation chroot --quiet -t "$BASE_IMAGE" -f "$work/Containerfile" "$work" >/dev/null
    echo "   built in $((SECONDS - start)) s"
fi

secret=()
if [ -s "$CA_BUNDLE" ]; then
    secret=(--secret "id=pip_ca,src=$CA_BUNDLE")
    echo "== CA bundle for the package index: $CA_BUNDLE (build secret pip_ca)"
fi
echo "== buildah bud: $IMAGE (PYTHON_IMAGE=$BASE_IMAGE)"
build_start=$SECONDS
if ! "${BUILDAH[@]}" bud --isolation chroot --format docker --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
        "${secret[@]}" -t "$IMAGE" . >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"
    exit 1
fi
echo "   built in $((SECONDS - build_start)) s; $("${BUILDAH[@]}" images --format '{{.Size}}' "$IMAGE")"

# vfs stores every layer as a full copy: drop the images earlier builds left untagged.
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true

echo "== run and check $IMAGE"
"$PY" scripts/check_image.py "$IMAGE"
echo "image built and checked in $((SECONDS - start)) s"
