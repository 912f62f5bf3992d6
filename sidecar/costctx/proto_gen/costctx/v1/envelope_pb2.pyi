from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Owner(_message.Message):
    __slots__ = ("tenant", "team", "feature", "user", "cost_center", "version")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    COST_CENTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    team: str
    feature: str
    user: str
    cost_center: str
    version: str
    def __init__(self, tenant: _Optional[str] = ..., team: _Optional[str] = ..., feature: _Optional[str] = ..., user: _Optional[str] = ..., cost_center: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("workflow_id", "workflow_name", "request_id", "retry_attempt", "owner", "policy_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    workflow_name: str
    request_id: str
    retry_attempt: int
    owner: Owner
    policy_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., request_id: _Optional[str] = ..., retry_attempt: _Optional[int] = ..., owner: _Optional[_Union[Owner, _Mapping]] = ..., policy_id: _Optional[str] = ...) -> None: ...
