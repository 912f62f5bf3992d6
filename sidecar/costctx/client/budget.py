"""A small client for the sidecar's budget check (gRPC), sync and asyncio.

    with BudgetClient("127.0.0.1:4317") as budget:
        decision = budget.check(workflow_id="wf-1", tenant="acme", feature="chat",
                                model="gpt-4o", estimated_cost_usd=0.05)
        if decision.blocked:
            stop(decision.reason)
        span.set_attributes(decision.span_attributes())  # budget.reservation_id, policy.id
        call(decision.model)                              # the cheaper model on DEGRADE

Inside a workflow opened with `costctx.client.open_envelope` (or a service that received
its baggage), `check()` needs no envelope fields: they come from the current baggage (any
given here take precedence), and the current trace and span id go with the check, so the
sidecar learns the context before the model-call span arrives:

    decision = budget.check(model="gpt-4o", estimated_cost_usd=0.05)

When the sidecar requires `extensions.bearertokenauth` and TLS on its gRPC port:

    BudgetClient("sidecar:4317", token=os.environ["COSTCTX_TOKEN"], ca_file="/etc/costctx/ca.crt")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from opentelemetry import trace

from costctx.client.envelope import envelope_from_baggage
from costctx.client.keys import FIELD_KEYS, canonical
from costctx.proto_gen.costctx.v1 import budget_pb2 as pb
from costctx.proto_gen.costctx.v1 import budget_pb2_grpc
from costctx.proto_gen.costctx.v1 import envelope_pb2 as envelope_pb


def make_envelope(*, workflow_id: str = "", workflow_name: str = "", request_id: str = "", retry_attempt: int = 0,
                  tenant: str = "", team: str = "", feature: str = "", user: str = "", cost_center: str = "",
                  version: str = "", policy_id: str = "") -> envelope_pb.Envelope:
    return envelope_pb.Envelope(
        workflow_id=workflow_id, workflow_name=workflow_name, request_id=request_id, retry_attempt=retry_attempt,
        owner=envelope_pb.Owner(tenant=tenant, team=team, feature=feature, user=user, cost_center=cost_center,
                                version=version),
        policy_id=policy_id,
    )


@dataclass(frozen=True)
class Decision:
    response: pb.CheckResponse

    @property
    def decision(self) -> str:
        return pb.Decision.Name(self.response.decision)  # ALLOW, DEGRADE, BLOCK

    @property
    def allowed(self) -> bool:
        """ALLOW or DEGRADE: make the call (with `model`)."""
        return self.response.decision in (pb.ALLOW, pb.DEGRADE)

    @property
    def blocked(self) -> bool:
        return not self.allowed

    @property
    def degraded(self) -> bool:
        return self.response.decision == pb.DEGRADE

    @property
    def model(self) -> str:
        return self.response.model

    @property
    def state(self) -> str:
        return pb.BudgetState.Name(self.response.state).lower()  # ok, soft, hard, tripped

    @property
    def reason(self) -> str:
        return self.response.reason

    @property
    def reservation_id(self) -> str:
        return self.response.reservation_id

    def span_attributes(self) -> dict[str, str]:
        """Put these on the model-call span: the sidecar replaces the reservation with its actual cost."""
        attrs = {}
        if self.response.reservation_id:
            attrs["budget.reservation_id"] = self.response.reservation_id
        if self.response.policy_id:
            attrs["policy.id"] = self.response.policy_id
        return attrs


def envelope_of(fields: dict[str, str | int]) -> envelope_pb.Envelope:
    """An Envelope message from canonical keys ({"workflow.id": ..., "owner.tenant": ...})."""
    short = {name: fields[key] for name, key in FIELD_KEYS.items() if key in fields}
    return make_envelope(**short)


def current_envelope(fields: dict) -> envelope_pb.Envelope:
    """The envelope of the current baggage, with the fields given here taking precedence."""
    merged = {**envelope_from_baggage(), **canonical(fields)}
    return envelope_of(merged)


def _current_ids() -> tuple[bytes, bytes]:
    """The current span's trace and span id (OTLP bytes), or empty when there is none."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return b"", b""
    return span_context.trace_id.to_bytes(16, "big"), span_context.span_id.to_bytes(8, "big")


def _request(model: str, estimated_cost_usd: float, input_tokens: int, output_tokens: int, dry_run: bool,
             envelope: envelope_pb.Envelope | None, fields: dict) -> pb.CheckRequest:
    trace_id, span_id = _current_ids()
    return pb.CheckRequest(
        envelope=envelope if envelope is not None else current_envelope(fields), model=model,
        estimated_cost_usd=estimated_cost_usd, estimated_input_tokens=input_tokens,
        estimated_output_tokens=output_tokens, dry_run=dry_run, trace_id=trace_id, span_id=span_id,
    )


def _auth_metadata(token: str | None, scheme: str) -> tuple[tuple[str, str], ...]:
    """`authorization: <scheme> <token>` on every call, as the sidecar's bearertokenauth expects."""
    return (("authorization", f"{scheme} {token.strip()}"),) if token else ()


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def grpc_channel_credentials(ca_file: str | None = None, cert_file: str | None = None,
                             key_file: str | None = None) -> grpc.ChannelCredentials:
    """TLS for the channel: `ca_file` to trust (system roots if None), `cert_file` and `key_file`
    for mutual TLS. (Not costctx.transport.tls: that imports the sidecar's config models, and
    the client must import without the sidecar.)"""
    return grpc.ssl_channel_credentials(root_certificates=_read(ca_file), private_key=_read(key_file),
                                        certificate_chain=_read(cert_file))


def _credentials(tls: bool, ca_file: str | None, cert_file: str | None,
                 key_file: str | None) -> grpc.ChannelCredentials | None:
    """TLS credentials when asked for (`tls=True`, or any of the files given), else None (plaintext)."""
    if tls or ca_file or cert_file or key_file:
        return grpc_channel_credentials(ca_file, cert_file, key_file)
    return None


class BudgetClient:
    """`token`: sent as `authorization: <scheme> <token>`. TLS: `ca_file` to trust (system roots
    with `tls=True`), `cert_file` and `key_file` for mutual TLS; any of them turns TLS on."""

    def __init__(self, target: str, timeout: float = 2.0, channel: grpc.Channel | None = None, *,
                 token: str | None = None, scheme: str = "Bearer", tls: bool = False,
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None) -> None:
        if channel is None:
            credentials = _credentials(tls, ca_file, cert_file, key_file)
            channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        self.channel = channel
        self.stub = budget_pb2_grpc.BudgetServiceStub(self.channel)
        self.timeout = timeout
        self.metadata = _auth_metadata(token, scheme)

    def check(self, *, model: str = "", estimated_cost_usd: float = 0.0, input_tokens: int = 0,
              output_tokens: int = 0, dry_run: bool = False, envelope: envelope_pb.Envelope | None = None,
              **envelope_fields) -> Decision:
        request = _request(model, estimated_cost_usd, input_tokens, output_tokens, dry_run, envelope, envelope_fields)
        return Decision(self.stub.Check(request, timeout=self.timeout, metadata=self.metadata))

    def release(self, reservation_id: str) -> bool:
        request = pb.ReleaseRequest(reservation_id=reservation_id)
        return self.stub.Release(request, timeout=self.timeout, metadata=self.metadata).released

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> BudgetClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncBudgetClient:
    """As BudgetClient, on asyncio (same `token` and TLS options)."""

    def __init__(self, target: str, timeout: float = 2.0, *, token: str | None = None, scheme: str = "Bearer",
                 tls: bool = False, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        credentials = _credentials(tls, ca_file, cert_file, key_file)
        self.channel = (grpc.aio.secure_channel(target, credentials) if credentials
                        else grpc.aio.insecure_channel(target))
        self.stub = budget_pb2_grpc.BudgetServiceStub(self.channel)
        self.timeout = timeout
        self.metadata = _auth_metadata(token, scheme)

    async def check(self, *, model: str = "", estimated_cost_usd: float = 0.0, input_tokens: int = 0,
                    output_tokens: int = 0, dry_run: bool = False, envelope: envelope_pb.Envelope | None = None,
                    **envelope_fields) -> Decision:
        request = _request(model, estimated_cost_usd, input_tokens, output_tokens, dry_run, envelope, envelope_fields)
        return Decision(await self.stub.Check(request, timeout=self.timeout, metadata=self.metadata))

    async def release(self, reservation_id: str) -> bool:
        request = pb.ReleaseRequest(reservation_id=reservation_id)
        response = await self.stub.Release(request, timeout=self.timeout, metadata=self.metadata)
        return response.released

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncBudgetClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
