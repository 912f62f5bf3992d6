"""Let no one in: bearer tokens on every server, TLS and mutual TLS on receivers and exporters."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from costctx.client.budget import AsyncBudgetClient, BudgetClient
from costctx.service.config.loader import ConfigError, build_config, load_config
from tests.support.certs import make_pki
from tests.support.endpoints import grpc_methods, http_routes
from tests.support.otlp_client import trace_request
from tests.support.sidecar import sidecar_config, start_sidecar, token_auth
from tests.support.wait import wait_until

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def grpc_export(channel: grpc.Channel, names: list[str], metadata=()) -> grpc.StatusCode:
    try:
        channel.unary_unary(EXPORT)(trace_request(names), timeout=5, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- bearer tokens -------------------------------------------------------------------------
@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    return path


def test_bearer_token_on_grpc_http_and_admin(make_sidecar, sink, token_file):
    runner = make_sidecar(processors=[], **token_auth(token_file))
    sidecar = runner.sidecar
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    assert grpc_export(channel, ["none"]) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_export(channel, ["wrong"], (("authorization", "Bearer nope"),)) == grpc.StatusCode.UNAUTHENTICATED
    basic = (("authorization", "Basic s3cret-token"),)
    assert grpc_export(channel, ["scheme"], basic) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_export(channel, ["right"], (("authorization", "Bearer s3cret-token"),)) == grpc.StatusCode.OK

    http = f"http://127.0.0.1:{sidecar.http_port}/v1/traces"
    body = trace_request(["http-none"])
    assert requests.post(http, data=body, headers=PROTOBUF, timeout=5).status_code == 401
    wrong = {**PROTOBUF, "Authorization": "Bearer nope"}
    assert requests.post(http, data=body, headers=wrong, timeout=5).status_code == 401
    right = {**PROTOBUF, "Authorization": "Bearer s3cret-token"}
    assert requests.post(http, data=trace_request(["http-right"]), headers=right, timeout=5).status_code == 200

    admin = f"http://127.0.0.1:{sidecar.admin_port}"
    assert requests.get(admin + "/metrics", timeout=5).status_code == 401
    assert requests.get(admin + "/healthz", timeout=5).status_code == 200  # kubelet probes carry no token
    assert requests.get(admin + "/readyz", timeout=5).status_code == 200
    metrics = requests.get(admin + "/metrics", headers={"Authorization": "Bearer s3cret-token"}, timeout=5)
    assert metrics.status_code == 200
    assert 'costctx_auth_refused_requests_total{server="grpc"} 3.0' in metrics.text
    assert 'costctx_auth_refused_requests_total{server="http"} 2.0' in metrics.text

    assert sink.wait_for_spans(2)
    assert sorted(s.name for s in sink.spans()) == ["http-right", "right"]
    channel.close()


def test_every_method_and_route_needs_the_token_except_the_probes(make_sidecar, token_file):
    # The default pipeline: any service a processor registers on these servers (budget) is covered.
    sidecar = make_sidecar(**token_auth(token_file)).sidecar
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    methods = grpc_methods(sidecar)
    assert len(methods) >= 3
    for method in methods:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(method)(b"", timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
    channel.close()
    servers = [(sidecar.http_port, sidecar.http.app), (sidecar.admin_port, sidecar.admin_app)]
    for port, app in servers:
        for method, path in http_routes(app):
            response = requests.request(method, f"http://127.0.0.1:{port}{path}", data=b"", timeout=5)
            expected = 200 if path in ("/healthz", "/readyz") else 401
            assert response.status_code == expected, (method, path, response.status_code)


def test_token_file_is_reloaded_on_change(make_sidecar, token_file):
    runner = make_sidecar(processors=[], **token_auth(token_file))
    channel = grpc.insecure_channel(f"127.0.0.1:{runner.sidecar.grpc_port}")
    old, new = (("authorization", "Bearer s3cret-token"),), (("authorization", "Bearer rotated"),)
    assert grpc_export(channel, ["a"], old) == grpc.StatusCode.OK
    token_file.write_text("rotated\n")
    assert grpc_export(channel, ["b"], old) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_export(channel, ["c"], new) == grpc.StatusCode.OK
    # Two lines: both valid, for a rotation without a gap.
    token_file.write_text("rotated\nnext\n")
    assert grpc_export(channel, ["d"], new) == grpc.StatusCode.OK
    assert grpc_export(channel, ["e"], (("authorization", "Bearer next"),)) == grpc.StatusCode.OK
    # A missing file (a secret mid-rotation) keeps the last tokens rather than opening up.
    token_file.unlink()
    assert grpc_export(channel, ["f"], new) == grpc.StatusCode.OK
    assert grpc_export(channel, ["g"]) == grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_real_sdk_with_the_token_header(make_sidecar, sink, token_file):
    runner = make_sidecar(processors=[], **token_auth(token_file))
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{runner.sidecar.grpc_port}", insecure=True,
        headers={"authorization": "Bearer s3cret-token"},
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "authed"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("sdk-span"):
        pass
    provider.shutdown()
    assert sink.wait_for_spans(1)
    assert sink.spans()[0].name == "sdk-span"


def test_a_named_bearertokenauth_instance_is_enforced(make_sidecar, token_file):
    """`bearertokenauth/prod` is a bearertokenauth like any other: auth must not be silently off."""
    runner = make_sidecar(processors=[], extensions={"bearertokenauth/prod": {"filename": str(token_file)}},
                          service={"extensions": ["bearertokenauth/prod"]})
    channel = grpc.insecure_channel(f"127.0.0.1:{runner.sidecar.grpc_port}")
    assert grpc_export(channel, ["none"]) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_export(channel, ["right"], (("authorization", "Bearer s3cret-token"),)) == grpc.StatusCode.OK
    channel.close()


def test_a_second_bearertokenauth_no_server_names_is_refused(token_file):
    # Two that no server names: which one guards what would be a guess (tests/test_auth_wiring.py
    # has the forms that name them).
    extensions = {"bearertokenauth": {"filename": str(token_file)}, "bearertokenauth/b": {"token": "other"}}
    service = {"extensions": ["bearertokenauth", "bearertokenauth/b"]}
    with pytest.raises(ConfigError, match="ambiguous"):
        build_config(sidecar_config(4317, processors=[], extensions=extensions, service=service), {})


def test_auth_config_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of filename, token"):
        build_config(sidecar_config(4317, processors=[], extensions={"bearertokenauth": {}}), {})
    with pytest.raises(ConfigError, match="extensions.oauth2: unknown extension"):
        build_config(sidecar_config(4317, processors=[], extensions={"oauth2": {}}), {})


def test_defaults_bind_to_loopback_only():
    config = load_config(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"})
    protocols = config.receivers.otlp.protocols
    for endpoint in (protocols.grpc.endpoint, protocols.http.endpoint, config.service.telemetry.metrics.address):
        assert endpoint.startswith("127.0.0.1:")


# -- TLS and mutual TLS on the receivers ---------------------------------------------------
def tls_receivers(pki, mutual: bool) -> dict:
    tls = {"cert_file": pki.server_cert, "key_file": pki.server_key}
    if mutual:
        tls["client_ca_file"] = pki.ca
    return {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0", "tls": tls},
                                   "http": {"endpoint": "127.0.0.1:0", "tls": tls}}}}


def secure_channel(port: int, pki, client: tuple[str, str] | None = None, ca: str | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.read(ca or pki.ca),
        private_key=pki.read(client[1]) if client else None,
        certificate_chain=pki.read(client[0]) if client else None,
    )
    return grpc.secure_channel(f"127.0.0.1:{port}", credentials)


def test_tls_receivers_serve_the_right_ca_and_refuse_plaintext_and_the_wrong_ca(make_sidecar, sink, pki):
    runner = make_sidecar(processors=[], receivers=tls_receivers(pki, mutual=False))
    port, http_port = runner.sidecar.grpc_port, runner.sidecar.http_port
    assert grpc_export(secure_channel(port, pki), ["tls-ok"]) == grpc.StatusCode.OK
    assert grpc_export(secure_channel(port, pki, ca=pki.rogue_ca), ["tls-rogue"]) == grpc.StatusCode.UNAVAILABLE
    assert grpc_export(grpc.insecure_channel(f"127.0.0.1:{port}"), ["plain"]) == grpc.StatusCode.UNAVAILABLE

    url = f"https://127.0.0.1:{http_port}/v1/traces"
    ok = requests.post(url, data=trace_request(["https-ok"]), headers=PROTOBUF, verify=pki.ca, timeout=5)
    assert ok.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(url, data=trace_request(["https-rogue"]), headers=PROTOBUF, verify=pki.rogue_ca, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url.replace("https", "http"), data=trace_request(["http-plain"]), headers=PROTOBUF, timeout=5)
    assert sink.wait_for_spans(2)
    assert sorted(s.name for s in sink.spans()) == ["https-ok", "tls-ok"]


def test_mutual_tls_receivers_need_a_client_certificate_from_the_ca(make_sidecar, sink, pki):
    runner = make_sidecar(processors=[], receivers=tls_receivers(pki, mutual=True))
    port, http_port = runner.sidecar.grpc_port, runner.sidecar.http_port
    good, rogue = (pki.client_cert, pki.client_key), (pki.rogue_client_cert, pki.rogue_client_key)
    assert grpc_export(secure_channel(port, pki, client=good), ["mtls-ok"]) == grpc.StatusCode.OK
    assert grpc_export(secure_channel(port, pki), ["no-cert"]) == grpc.StatusCode.UNAVAILABLE
    assert grpc_export(secure_channel(port, pki, client=rogue), ["rogue-cert"]) == grpc.StatusCode.UNAVAILABLE

    url = f"https://127.0.0.1:{http_port}/v1/traces"
    ok = requests.post(url, data=trace_request(["https-mtls-ok"]), headers=PROTOBUF, verify=pki.ca, cert=good,
                       timeout=5)
    assert ok.status_code == 200
    for cert in (None, rogue):
        with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is a ConnectionError
            requests.post(url, data=trace_request(["refused"]), headers=PROTOBUF, verify=pki.ca, cert=cert,
                          timeout=5)
    assert sink.wait_for_spans(2)
    assert sorted(s.name for s in sink.spans()) == ["https-mtls-ok", "mtls-ok"]


# -- TLS and mutual TLS on the exporters ---------------------------------------------------
@pytest.mark.parametrize("exporter", ["otlp", "otlphttp"])
def test_exporter_mutual_tls_to_a_tls_downstream(make_sidecar, sink, pki, exporter):
    downstream = make_sidecar(processors=[], receivers=tls_receivers(pki, mutual=True)).sidecar

    def upstream(client_cert: str, client_key: str, ca: str = pki.ca):
        tls = {"ca_file": ca, "cert_file": client_cert, "key_file": client_key}
        if exporter == "otlp":
            section = {"endpoint": f"127.0.0.1:{downstream.grpc_port}", "tls": tls}
        else:
            section = {"endpoint": f"https://127.0.0.1:{downstream.http_port}", "tls": tls}
        section.update({"timeout": "2s", "retry_on_failure": {"initial_interval": "50ms", "max_interval": "100ms",
                                                              "max_elapsed_time": "1s"}})
        config = sidecar_config(0, processors=[], exporter=exporter)
        config["exporters"] = {exporter: section}
        return start_sidecar(config)

    good = upstream(pki.client_cert, pki.client_key)
    rogue = upstream(pki.rogue_client_cert, pki.rogue_client_key)
    distrusting = upstream(pki.client_cert, pki.client_key, ca=pki.rogue_ca)  # does not trust the server
    try:
        for runner, name in ((good, "via-mtls"), (rogue, "rogue"), (distrusting, "distrusting")):
            channel = grpc.insecure_channel(f"127.0.0.1:{runner.sidecar.grpc_port}")
            assert grpc_export(channel, [name]) == grpc.StatusCode.OK
        assert sink.wait_for_spans(1)
        failed = "costctx_exporter_send_failed_items_total"
        labels = {"signal": "traces", "exporter": exporter}
        for refused in (rogue, distrusting):
            registry = refused.sidecar.metrics.registry
            wait_until(lambda registry=registry: registry.get_sample_value(failed, labels))
            # The downstream refused the untrusted client certificate, or the upstream refused
            # the server's: nothing got through, and the batch it could not deliver is counted.
            assert registry.get_sample_value(failed, labels) == 1
        assert [s.name for s in sink.spans()] == ["via-mtls"]
    finally:
        good.stop()
        rogue.stop()
        distrusting.stop()


# -- the budget client against a sidecar that requires the token (and TLS) ----------------
BUDGET = {"budget": {"backend": "memory", "policies": [{"id": "p", "workflow": {"cost_usd": 1.0}}]}}


def budget_refusal(client: BudgetClient) -> grpc.StatusCode | None:
    """The status both budget methods answer with, or None when both were served."""
    codes = set()
    for call in (lambda: client.check(workflow_id="wf-auth", policy_id="p", estimated_cost_usd=0.1),
                 lambda: client.release("no-such-reservation")):
        try:
            call()
        except grpc.RpcError as exc:
            codes.add(exc.code())
        else:
            codes.add(None)
    assert len(codes) == 1, codes
    return codes.pop()


def test_budget_client_sends_the_token(make_sidecar, token_file):
    runner = make_sidecar(processors=["budget"], processor_config=BUDGET,
                          **token_auth(token_file))
    target = f"127.0.0.1:{runner.sidecar.grpc_port}"
    for token in (None, "nope"):
        with BudgetClient(target, token=token) as client:
            assert budget_refusal(client) == grpc.StatusCode.UNAUTHENTICATED
    with BudgetClient(target, token="s3cret-token", scheme="Basic") as client:
        assert budget_refusal(client) == grpc.StatusCode.UNAUTHENTICATED
    with BudgetClient(target, token="s3cret-token") as client:
        assert budget_refusal(client) is None
        decision = client.check(workflow_id="wf-auth-2", policy_id="p", estimated_cost_usd=0.1)
        assert decision.decision == "ALLOW" and decision.reservation_id
        assert client.release(decision.reservation_id)
    with BudgetClient(target, token="s3cret-token", scheme="bearer") as client:  # scheme is case-insensitive
        assert budget_refusal(client) is None

    async def run(token: str | None):
        async with AsyncBudgetClient(target, token=token) as client:
            try:
                decision = await client.check(workflow_id="wf-auth-3", policy_id="p", estimated_cost_usd=0.1)
            except grpc.RpcError as exc:
                return exc.code()
            return await client.release(decision.reservation_id)

    assert asyncio.run(run(None)) == grpc.StatusCode.UNAUTHENTICATED
    assert asyncio.run(run("nope")) == grpc.StatusCode.UNAUTHENTICATED
    assert asyncio.run(run("s3cret-token")) is True


def test_budget_client_over_mutual_tls_with_the_token(make_sidecar, pki, token_file):
    runner = make_sidecar(processors=["budget"], processor_config=BUDGET, receivers=tls_receivers(pki, mutual=True),
                          **token_auth(token_file))
    target = f"127.0.0.1:{runner.sidecar.grpc_port}"
    mtls = {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key}
    with BudgetClient(target, token="s3cret-token", **mtls) as client:
        assert budget_refusal(client) is None
    with BudgetClient(target, token="nope", **mtls) as client:
        assert budget_refusal(client) == grpc.StatusCode.UNAUTHENTICATED
    refused = [
        {"token": "s3cret-token", "ca_file": pki.ca},  # no client certificate
        {"token": "s3cret-token", **mtls, "ca_file": pki.rogue_ca},  # does not trust the server
        {"token": "s3cret-token"},  # plaintext
    ]
    for options in refused:
        with BudgetClient(target, timeout=5, **options) as client:
            assert budget_refusal(client) == grpc.StatusCode.UNAVAILABLE, options

    async def run() -> bool:
        async with AsyncBudgetClient(target, token="s3cret-token", **mtls) as client:
            decision = await client.check(workflow_id="wf-mtls", policy_id="p", estimated_cost_usd=0.1)
            return decision.allowed and await client.release(decision.reservation_id)

    assert asyncio.run(run())
