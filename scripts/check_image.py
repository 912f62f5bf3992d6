"""Run a built costctx image the way a pod runs it, without a container engine, and check it.

The image (built by scripts/build_image.sh into buildah's vfs storage) is mounted with
`buildah mount`; its entry point and command, from the image's own config, run in a private
mount namespace chrooted into that root filesystem, remounted read-only (as
`readOnlyRootFilesystem: true` does; /tmp is a tmpfs, /proc and /dev are mounted), as the
image's USER. The sidecar's ports are set through the environment of the shipped config, as
the tests do. The OpenTelemetry SDK sends spans through it to a sink in this process.

Checks: the native codec is installed and no compiler is; it answers /healthz; it runs as
uid/gid 10001; its root is mounted read-only; spans
sent with the SDK reach the sink enriched (the envelope stamped, survival counted); the status
page renders; SIGTERM stops it with exit code 0. Prints one line per check and
`image check: N passed, M failed`. Usage: python scripts/check_image.py localhost/costctx:check
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from costctx.cli.sink import OtlpSink

BUILDAH = ["buildah", "--storage-driver", os.environ.get("BUILDAH_STORAGE_DRIVER", "vfs")]
EXPECTED_UID = 10001


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def buildah(*args: str) -> str:
    return subprocess.run([*BUILDAH, *args], check=True, capture_output=True, text=True).stdout.strip()


def get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=3) as response:
        return response.status, response.read().decode()


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def child_of(pid: int, timeout: float = 10) -> int:
    """The process `unshare --fork` started (after its execs: the entry point itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            break
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("the container process did not start")


def launch(root: str, config: dict, env: dict[str, str], tmp_files: dict[str, str]) -> subprocess.Popen:
    """`tmp_files` (name -> content) are written into the container's /tmp before it starts, as
    a Kubernetes Secret volume would put them beside a read-only root."""
    user = config.get("User") or "0:0"
    argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    image_env = dict(item.split("=", 1) for item in config.get("Env") or [])
    environment = {**image_env, **env}
    # Inside a private mount namespace: the image root bind-mounted onto itself, /proc, /dev and
    # a small /tmp mounted, then the root remounted read-only; then chroot as the image's user.
    setup = " && ".join([
        f"mount --bind {shlex.quote(root)} {shlex.quote(root)}",
        f"mount -t proc proc {shlex.quote(root + '/proc')}",
        f"mount --rbind /dev {shlex.quote(root + '/dev')}",
        f"mount -t tmpfs -o size=16m,mode=1777 tmpfs {shlex.quote(root + '/tmp')}",
        *(f"printf %s {shlex.quote(content)} > {shlex.quote(root + '/tmp/' + name)}"
          f" && chmod 0444 {shlex.quote(root + '/tmp/' + name)}" for name, content in tmp_files.items()),
        f"mount -o remount,bind,ro {shlex.quote(root)}",
        "exec chroot --userspec=" + shlex.quote(user) + " " + shlex.quote(root)
        + " /usr/bin/env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
        + " " + " ".join(shlex.quote(a) for a in argv),
    ])
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", setup],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main(image: str) -> int:
    checks = Checks()
    info = json.loads(buildah("inspect", "--type", "image", image))
    config = info["OCIv1"]["config"]
    print(f"image {image}: entrypoint {config.get('Entrypoint')} cmd {config.get('Cmd')} user {config.get('User')}")
    container = buildah("from", "--pull-never", image)
    root = buildah("mount", container)
    proc: subprocess.Popen | None = None
    try:
        # The builder stage compiled the native codec; the runtime stage carries no toolchain.
        native = sorted(Path(root).glob("opt/costctx/lib/python3*/site-packages/costctx_native/_core*.so"))
        checks.check("the native codec is installed", bool(native), ", ".join(p.name for p in native))
        toolchain = [name for name in ("rustc", "cargo", "gcc", "cc")
                     if (Path(root) / "usr/bin" / name).exists()]
        checks.check("no compiler toolchain in the runtime image", not toolchain, ", ".join(toolchain))
        with OtlpSink(http_port=None) as sink:
            grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
            env = {
                "COSTCTX_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
                "COSTCTX_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
                "COSTCTX_TELEMETRY_ADDRESS": f"127.0.0.1:{admin_port}",
                "COLLECTOR_ENDPOINT": f"127.0.0.1:{sink.grpc_port}",
                "COSTCTX_SHUTDOWN_GRACE": "5s",
                # The admin port's bearer token, as the Deployment mounts it from its Secret.
                "COSTCTX_ADMIN_TOKEN_FILE": "/tmp/costctx-admin-token",
            }
            admin_token = secrets.token_hex(16)
            proc = launch(root, config, env, {"costctx-admin-token": admin_token})
            pid = child_of(proc.pid)
            healthy = wait_until(lambda: get(admin_port, "/healthz")[0] == 200, 60)
            if not checks.check("answers /healthz", healthy):
                proc.kill()
                print(proc.communicate(timeout=10)[0][-3000:])
                return 1

            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            uids, gids = status["Uid"].split(), status["Gid"].split()
            checks.check(f"runs as uid/gid {EXPECTED_UID} (not root)",
                         set(uids) == {str(EXPECTED_UID)} and set(gids) == {str(EXPECTED_UID)},
                         f"Uid {uids} Gid {gids}")
            mountinfo = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            root_mount = next(line.split() for line in mountinfo if line.split()[4] == "/")
            checks.check("root filesystem mounted read-only", "ro" in root_mount[5].split(","), root_mount[5])

            provider = TracerProvider(resource=Resource.create({"service.name": "image-check"}))
            provider.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)))
            tracer = provider.get_tracer("image-check")
            attrs = {"workflow.id": "wf-img", "workflow.name": "image", "request.id": "r-1",
                     "owner.tenant": "acme", "owner.feature": "check"}
            model = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100,
                     "gen_ai.usage.output_tokens": 10}
            with tracer.start_as_current_span("root", attributes=attrs), \
                    tracer.start_as_current_span("chat", attributes=model):
                pass
            provider.shutdown()
            arrived = sink.wait_for_spans(2, timeout=20)
            spans = {s.name: s for s in sink.spans()}
            checks.check("spans sent with the SDK reach the sink", arrived and set(spans) == {"root", "chat"},
                         f"{sorted(spans)}")
            chat = spans.get("chat")
            stamped = {k: v for k, v in (chat.attributes if chat else {}).items() if k.startswith(("cost", "owner"))}
            checks.check("the envelope is stamped and the tenant inherited",
                         chat is not None and chat.attributes.get("costctx.schema") == "1"
                         and chat.attributes.get("owner.tenant") == "acme"
                         and chat.attributes.get("cost.usd", 0) > 0,
                         f"{stamped}")
            try:
                refused = get(admin_port, "/status")[0]
            except urllib.error.HTTPError as exc:
                refused = exc.code
            checks.check("the admin port refuses /status without its token", refused == 401, f"{refused}")
            code, page = get(admin_port, "/status", admin_token)
            checks.check("the status page shows the hop", code == 200 and 'data-hop="image-check"' in page)

            os.kill(pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            checks.check("SIGTERM stops it with exit code 0", proc.returncode == 0, f"exit {proc.returncode}")
            if checks.failed:
                print(out[-3000:])
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        buildah("umount", container)
        buildah("rm", container)
    print(f"image check: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "localhost/costctx:check"))
