"""Check decoded JSON against a protobuf message's shape before json_format reads it.

json_format is lenient where a receiver must not be: a string where a message belongs is read
as an empty message (`"envelope": "x"` became an empty envelope, which a budget check ALLOWs),
and invalid characters in base64 are dropped silently. Deep nesting must end in a refusal, not
a RecursionError, so the walk is iterative and bounded at protobuf's own recursion limit.
Unknown fields are not walked (json_format ignores them anyway).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor, FieldDescriptor


# protobuf's default recursion limit for binary messages: the JSON form gets the same bound.
MAX_MESSAGE_DEPTH = 100

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")

# (message descriptor, bytes field, JSON value) -> the value json_format should see (base64).
BytesConverter = Callable[["Descriptor", "FieldDescriptor", str], str]


class ShapeError(ValueError):
    """The document does not have the message's shape; the message names the field."""


def check_base64(value: str, where: str) -> str:
    """json_format accepts standard and URL-safe base64, padding optional; nothing else."""
    if not _BASE64.fullmatch(value) or len(value.rstrip("=")) % 4 == 1:
        raise ShapeError(f"{where}: invalid base64")
    return value


def _default_bytes(descriptor: Descriptor, field: FieldDescriptor, value: str) -> str:
    return check_base64(value, field.json_name)


_FIELDS: dict[str, dict[str, FieldDescriptor]] = {}


def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """JSON accepts both the lowerCamel json_name and the proto field name."""
    fields = _FIELDS.get(descriptor.full_name)
    if fields is None:
        fields = {}
        for field in descriptor.fields:
            fields[field.name] = field
            fields[field.json_name] = field
        _FIELDS[descriptor.full_name] = fields
    return fields


def _is_checked_message(field: FieldDescriptor) -> bool:
    # Well-known types (Struct, Value, Timestamp, wrappers...) have their own JSON forms.
    return field.message_type is not None and not field.message_type.full_name.startswith("google.protobuf.")


def check_json_shape(data: Any, descriptor: Descriptor, convert_bytes: BytesConverter | None = None) -> None:
    """Raise ShapeError unless `data` has `descriptor`'s shape: objects where messages belong,
    arrays where repeated fields belong, strings that are valid base64 (or what `convert_bytes`
    accepts; its return value replaces the string in place) where bytes belong."""
    convert = convert_bytes or _default_bytes
    if not isinstance(data, dict):
        raise ShapeError(f"a {descriptor.name} must be a JSON object")
    stack: list[tuple[dict, Descriptor, int]] = [(data, descriptor, 1)]
    while stack:
        node, message, depth = stack.pop()
        if depth > MAX_MESSAGE_DEPTH:
            raise ShapeError(f"nested deeper than {MAX_MESSAGE_DEPTH} messages")
        fields = _fields(message)
        for key, value in node.items():
            field = fields.get(key)
            if field is None or value is None:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                if not isinstance(value, dict):
                    raise ShapeError(f"{key} must be a JSON object")
                value_field = field.message_type.fields_by_name["value"]
                for map_key in list(value):
                    _singular(message, value_field, value, map_key, depth, stack, convert, key)
            elif field.is_repeated:
                if not isinstance(value, list):
                    raise ShapeError(f"{key} must be a JSON array")
                for index in range(len(value)):
                    _singular(message, field, value, index, depth, stack, convert, key)
            else:
                _singular(message, field, node, key, depth, stack, convert, key)


def _singular(message: Descriptor, field: FieldDescriptor, container: Any, index: Any, depth: int,
              stack: list, convert: BytesConverter, where: str) -> None:
    value = container[index]
    if value is None:
        return
    if _is_checked_message(field):
        if not isinstance(value, dict):
            raise ShapeError(f"{where} must be a JSON object, not {type(value).__name__}")
        stack.append((value, field.message_type, depth + 1))
    elif field.type == field.TYPE_BYTES:
        if not isinstance(value, str):
            raise ShapeError(f"{where} must be a string")
        container[index] = convert(message, field, value)
