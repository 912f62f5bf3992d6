"""Read the deployment files the way the container runtime would, to run the sidecar as it runs in a pod.

The Dockerfile gives the entry point and default arguments; the Deployment's sidecar container
overrides the arguments, sets the environment and mounts the ConfigMap; the kustomization's
configMapGenerator says which repository file becomes that ConfigMap. Following that chain
(instead of hard-coding a path) keeps the test honest when any link in it changes.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from costctx.service.config import load_config

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
K8S_BASE = REPO / "k8s" / "base"


@dataclass
class SidecarLaunch:
    argv: list[str]  # the container's command line, with the mounted config mapped to the repository file
    env: dict[str, str]  # the container's environment from the Deployment
    config_file: Path  # the repository file the ConfigMap is generated from
    grace: float  # seconds to drain on SIGTERM (--grace, else the config's service.shutdown_grace)
    termination_grace_period: float  # the pod's terminationGracePeriodSeconds


def dockerfile_exec_form(instruction: str) -> list[str]:
    """The last ENTRYPOINT or CMD in the Dockerfile (the final stage's), in exec (JSON) form."""
    found: list[str] | None = None
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == instruction:
            found = json.loads(rest)  # exec form only: shell form would put /bin/sh at PID 1
    if found is None:
        raise AssertionError(f"Dockerfile has no {instruction}")
    return found


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def deployment() -> dict[str, Any]:
    docs = [d for d in load_yaml_documents(K8S_BASE / "deployment.yaml") if d.get("kind") == "Deployment"]
    assert len(docs) == 1, "k8s/base/deployment.yaml should hold one Deployment"
    return docs[0]


def sidecar_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """The native sidecar: the init container with restartPolicy Always."""
    sidecars = [c for c in pod_spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    assert len(sidecars) == 1, "expected one native sidecar (an init container with restartPolicy: Always)"
    return sidecars[0]


def configmap_source(configmap_name: str, key: str) -> Path:
    """The file the kustomization's configMapGenerator turns into `configmap_name`'s `key`."""
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    for generator in kustomization.get("configMapGenerator", []):
        if generator.get("name") != configmap_name:
            continue
        for entry in generator.get("files", []):
            name, sep, source = entry.partition("=")
            file_key, file_path = (name, source) if sep else (PurePosixPath(entry).name, entry)
            if file_key == key:
                return K8S_BASE / file_path
    raise AssertionError(f"no configMapGenerator entry gives {configmap_name}/{key}")


def mounted_file_source(pod_spec: dict[str, Any], container: dict[str, Any], path: str) -> Path:
    """Map a file path inside the container to the repository file its ConfigMap volume comes from."""
    target = PurePosixPath(path)
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        mount_path = PurePosixPath(mount["mountPath"])
        if target.parent != mount_path:
            continue
        volume = volumes[mount["name"]]
        assert "configMap" in volume, f"{path} is mounted from {mount['name']}, which is not a ConfigMap"
        return configmap_source(volume["configMap"]["name"], target.name)
    raise AssertionError(f"nothing is mounted at {target.parent} in container {container['name']}")


def costctx_executable() -> str:
    """The `costctx` console script of the environment running the tests (the image's is on PATH)."""
    found = shutil.which("costctx", path=str(Path(sys.executable).parent)) or shutil.which("costctx")
    if found is None:
        raise AssertionError("the costctx console script is not installed (pip install .)")
    return found


def sidecar_launch() -> SidecarLaunch:
    """How the kubelet would start the sidecar container, mapped onto this machine."""
    spec = deployment()["spec"]["template"]["spec"]
    container = sidecar_container(spec)
    entrypoint = container.get("command") or dockerfile_exec_form("ENTRYPOINT")
    args = list(container["args"]) if "args" in container else dockerfile_exec_form("CMD")
    assert entrypoint[0] == "costctx", f"unexpected entry point {entrypoint}"

    config_index = args.index("--config") + 1
    config_file = mounted_file_source(spec, container, args[config_index])
    args[config_index] = str(config_file)
    env = {item["name"]: str(item["value"]) for item in container.get("env", []) if "value" in item}
    if "--grace" in args:
        grace = float(args[args.index("--grace") + 1])
    else:  # the drain budget the config gives, once the container's environment is there
        grace = load_config(config_file, environ=env).service.shutdown_grace
    return SidecarLaunch(
        argv=[costctx_executable(), *entrypoint[1:], *args],
        env=env,
        config_file=config_file,
        grace=grace,
        termination_grace_period=float(spec.get("terminationGracePeriodSeconds", 30)),
    )
