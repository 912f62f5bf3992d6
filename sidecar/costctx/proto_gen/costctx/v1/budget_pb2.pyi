from costctx.proto_gen.costctx.v1 import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    ALLOW: _ClassVar[Decision]
    DEGRADE: _ClassVar[Decision]
    BLOCK: _ClassVar[Decision]

class BudgetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_STATE_UNSPECIFIED: _ClassVar[BudgetState]
    OK: _ClassVar[BudgetState]
    SOFT: _ClassVar[BudgetState]
    HARD: _ClassVar[BudgetState]
    TRIPPED: _ClassVar[BudgetState]
DECISION_UNSPECIFIED: Decision
ALLOW: Decision
DEGRADE: Decision
BLOCK: Decision
BUDGET_STATE_UNSPECIFIED: BudgetState
OK: BudgetState
SOFT: BudgetState
HARD: BudgetState
TRIPPED: BudgetState

class CheckRequest(_message.Message):
    __slots__ = ("envelope", "model", "estimated_cost_usd", "estimated_input_tokens", "estimated_output_tokens", "dry_run", "trace_id", "span_id")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    envelope: _envelope_pb2.Envelope
    model: str
    estimated_cost_usd: float
    estimated_input_tokens: int
    estimated_output_tokens: int
    dry_run: bool
    trace_id: bytes
    span_id: bytes
    def __init__(self, envelope: _Optional[_Union[_envelope_pb2.Envelope, _Mapping]] = ..., model: _Optional[str] = ..., estimated_cost_usd: _Optional[float] = ..., estimated_input_tokens: _Optional[int] = ..., estimated_output_tokens: _Optional[int] = ..., dry_run: _Optional[bool] = ..., trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("dimension", "unit", "spent", "reserved", "limit", "remaining")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    unit: str
    spent: float
    reserved: float
    limit: float
    remaining: float
    def __init__(self, dimension: _Optional[str] = ..., unit: _Optional[str] = ..., spent: _Optional[float] = ..., reserved: _Optional[float] = ..., limit: _Optional[float] = ..., remaining: _Optional[float] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("decision", "model", "state", "policy_id", "reason", "dimension", "spent_usd", "limit_usd", "remaining_usd", "unit", "reservation_id", "reservation_ttl_ms", "reserved_cost_usd", "usages")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SPENT_USD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_USD_FIELD_NUMBER: _ClassVar[int]
    REMAINING_USD_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    USAGES_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    model: str
    state: BudgetState
    policy_id: str
    reason: str
    dimension: str
    spent_usd: float
    limit_usd: float
    remaining_usd: float
    unit: str
    reservation_id: str
    reservation_ttl_ms: int
    reserved_cost_usd: float
    usages: _containers.RepeatedCompositeFieldContainer[Usage]
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., model: _Optional[str] = ..., state: _Optional[_Union[BudgetState, str]] = ..., policy_id: _Optional[str] = ..., reason: _Optional[str] = ..., dimension: _Optional[str] = ..., spent_usd: _Optional[float] = ..., limit_usd: _Optional[float] = ..., remaining_usd: _Optional[float] = ..., unit: _Optional[str] = ..., reservation_id: _Optional[str] = ..., reservation_ttl_ms: _Optional[int] = ..., reserved_cost_usd: _Optional[float] = ..., usages: _Optional[_Iterable[_Union[Usage, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...
