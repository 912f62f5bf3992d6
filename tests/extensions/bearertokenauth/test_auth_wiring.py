"""Auth never fails open: typed authenticator names (`bearertokenauth/otlp`) are enforced,
servers name their authenticator as in the Collector, and any configured extension that
would run nowhere is a config error."""

from __future__ import annotations

import grpc
import pytest
import requests

from costctx.service.config.loader import ConfigError, build_config
from tests.support.otlp_client import trace_request
from tests.support.sidecar import sidecar_config

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def grpc_status(port: int, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            channel.unary_unary(EXPORT)(trace_request(["s"]), timeout=5, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def http_status(port: int, path: str, token: str | None, method: str = "POST") -> int:
    headers = {**PROTOBUF, **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.request(method, f"http://127.0.0.1:{port}{path}", data=trace_request(["h"]),
                            headers=headers, timeout=5).status_code


def test_a_typed_extension_name_is_enforced(make_sidecar):
    side = make_sidecar(processors=[], extensions={"bearertokenauth/otlp": {"token": "t0k"}},
                        service={"extensions": ["bearertokenauth/otlp"]}).sidecar
    assert grpc_status(side.grpc_port, None) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(side.grpc_port, "t0k") == grpc.StatusCode.OK
    assert http_status(side.http_port, "/v1/traces", None) == 401
    assert http_status(side.http_port, "/v1/traces", "t0k") == 200
    assert http_status(side.admin_port, "/metrics", None, "GET") == 401
    assert http_status(side.admin_port, "/healthz", None, "GET") == 200


def test_servers_name_their_own_authenticator(make_sidecar):
    receivers = {"otlp": {"protocols": {
        "grpc": {"endpoint": "127.0.0.1:0", "auth": {"authenticator": "bearertokenauth/otlp"}},
        "http": {"endpoint": "127.0.0.1:0", "auth": {"authenticator": "bearertokenauth/otlp"}},
    }}}
    side = make_sidecar(
        processors=[], receivers=receivers,
        extensions={"bearertokenauth/otlp": {"token": "app"}, "bearertokenauth/admin": {"token": "ops"}},
        service={"extensions": ["bearertokenauth/otlp", "bearertokenauth/admin"],
                 "telemetry": {"metrics": {"auth": {"authenticator": "bearertokenauth/admin"}}}},
    ).sidecar
    assert grpc_status(side.grpc_port, "app") == grpc.StatusCode.OK
    assert grpc_status(side.grpc_port, "ops") == grpc.StatusCode.UNAUTHENTICATED
    assert http_status(side.http_port, "/v1/traces", "app") == 200
    assert http_status(side.http_port, "/v1/traces", "ops") == 401
    assert http_status(side.admin_port, "/metrics", "ops", "GET") == 200
    assert http_status(side.admin_port, "/metrics", "app", "GET") == 401
    assert http_status(side.admin_port, "/readyz", None, "GET") == 200


def test_an_unnamed_authenticator_guards_the_servers_naming_none(make_sidecar):
    # The admin port names one; the receivers name none, so the other one guards them.
    side = make_sidecar(
        processors=[],
        extensions={"bearertokenauth": {"token": "app"}, "bearertokenauth/admin": {"token": "ops"}},
        service={"extensions": ["bearertokenauth", "bearertokenauth/admin"],
                 "telemetry": {"metrics": {"auth": {"authenticator": "bearertokenauth/admin"}}}},
    ).sidecar
    assert grpc_status(side.grpc_port, None) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_status(side.grpc_port, "app") == grpc.StatusCode.OK
    assert http_status(side.admin_port, "/metrics", "ops", "GET") == 200


def _config(**overrides) -> dict:
    return sidecar_config(4317, processors=[], **overrides)


@pytest.mark.parametrize("overrides, message", [
    # Configured but not enabled: would run nowhere.
    ({"extensions": {"bearertokenauth/otlp": {"token": "x"}}}, "configured but not enabled"),
    ({"extensions": {"bearertokenauth": {"token": "x"}}}, "configured but not enabled"),
    # Enabled but not configured.
    ({"service": {"extensions": ["bearertokenauth"]}}, "not configured under extensions"),
    # A server names an authenticator that does not exist.
    ({"receivers": {"otlp": {"protocols": {"grpc": {"auth": {"authenticator": "bearertokenauth/x"}}}}}},
     "grpc.auth.authenticator: 'bearertokenauth/x' is not configured"),
    # Two that no server names: which guards what is ambiguous.
    ({"extensions": {"bearertokenauth/a": {"token": "a"}, "bearertokenauth/b": {"token": "b"}},
      "service": {"extensions": ["bearertokenauth/a", "bearertokenauth/b"]}}, "ambiguous"),
    # One that every server passes over would run nowhere.
    ({"extensions": {"bearertokenauth/a": {"token": "a"}, "bearertokenauth/b": {"token": "b"}},
      "service": {"extensions": ["bearertokenauth/a", "bearertokenauth/b"],
                  "telemetry": {"metrics": {"auth": {"authenticator": "bearertokenauth/a"}}}},
      "receivers": {"otlp": {"protocols": {"grpc": {"auth": {"authenticator": "bearertokenauth/a"}},
                                           "http": {"auth": {"authenticator": "bearertokenauth/a"}}}}}},
     "'bearertokenauth/b' is checked by no server"),
])
def test_auth_that_would_fail_open_is_a_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(_config(**overrides), {})


@pytest.mark.e2e  # the real command line
def test_a_server_beyond_loopback_without_auth_is_warned_about(tmp_path):
    import subprocess
    import sys

    import yaml

    config = _config(service={"telemetry": {"metrics": {"address": "0.0.0.0:8888"}}})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "costctx", "validate", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "service.telemetry.metrics listens on 0.0.0.0:8888 without auth" in result.stderr
    # Guarded: no warning. Loopback receivers: no warning either.
    guarded = _config(extensions={"bearertokenauth/admin": {"token": "t"}},
                      service={"extensions": ["bearertokenauth/admin"],
                               "telemetry": {"metrics": {"address": "0.0.0.0:8888",
                                                         "auth": {"authenticator": "bearertokenauth/admin"}}}})
    path.write_text(yaml.safe_dump(guarded))
    result = subprocess.run([sys.executable, "-m", "costctx", "validate", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
