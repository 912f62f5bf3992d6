#!/usr/bin/env bash
# Offline checks of the deployment files (no cluster, no Docker engine):
#  1. render the kustomize base (k8s/base), the example overlay and k8s/monitoring (the
#     PrometheusRule: no schema is bundled for the operator CRD, so it is only rendered) with kubectl's kustomize;
#  2. validate every rendered object, strictly (unknown fields are errors), against the
#     Kubernetes API schemas of named versions: 1.33 (native sidecars GA) and 1.37 (newest
#     the tool bundles);
#  3. check the sidecar config in the ConfigMap loads with the container's environment;
#  4. lint the Dockerfile with hadolint;
#  5. check requirements.lock (what the image installs) still covers pyproject.toml.
# Tools: pip install -r scripts/deploy-check-requirements.txt
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}
PY=${CHECK_DEPLOY_PYTHON:-python}  # the venv with costctx installed (.ci/run activates it)

for tool in kubectl kubernetes-validate hadolint; do
  command -v "$tool" >/dev/null || {
    echo "check_deploy: $tool not found; pip install -r scripts/deploy-check-requirements.txt" >&2
    exit 1
  }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== kustomize ($(kubectl version --client | tr '\n' ' '))"
for dir in k8s/base k8s/overlays/example k8s/monitoring; do
  out="$work/$(echo "$dir" | tr '/' '_').yaml"
  kubectl kustomize "$dir" >"$out"
  echo "   $dir: $(grep -E '^kind:' "$out" | awk '{print $2}' | sort | tr '\n' ' ')"
  for version in $K8S_VERSIONS; do
    echo "== kubernetes-validate --strict: $dir, every object against Kubernetes $version"
    kubernetes-validate --strict --kubernetes-version "$version" "$out"
  done
done

echo "== the ConfigMap's sidecar config, with the container's environment"
# The admin token comes from a Secret mounted in the pod; a stand-in file here (validate reads it).
echo "check-deploy-stand-in" >"$work/admin-token"
COLLECTOR_ENDPOINT=otel-collector.observability.svc.cluster.local:4317 COSTCTX_ADMIN_TOKEN_FILE="$work/admin-token" \
  "$PY" -m costctx validate --config k8s/base/sidecar.yaml

echo "== hadolint $(hadolint --version | awk '{print $NF}'): Dockerfile"
hadolint --failure-threshold info Dockerfile && echo "   no findings"

echo "== requirements.lock against pyproject.toml"
"$PY" scripts/check_lock.py

echo "deploy checks passed (the image is built and run by scripts/build_image.sh)"
