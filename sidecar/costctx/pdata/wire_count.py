"""Count an OTLP request's resources, scopes and items on the wire, before parsing it.

Parsing makes a message of every item however small it is on the wire: 4 MiB of empty spans
(2 bytes each, 2M of them) took ~360 MB to parse before anything could count them. All three
OTLP export requests share one shape: field 1 of the request is a resource block, field 2
of a resource block a scope block, field 2 of a scope block an item (span, log record,
metric). This walks those three levels only, skipping everything else by its length, and
stops as soon as a count passes the limit: ~one step per item for a normal request.
"""

from __future__ import annotations

_PATH = (1, 2, 2)  # request -> resource block -> scope block -> item


class WireError(ValueError):
    """Not valid protobuf: the real parser will say why."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at data[pos:end]; WireError past `end`."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _children(data: bytes, start: int, end: int, field: int):
    """(start, end) of each length-delimited `field` in the message data[start:end]."""
    pos = start
    while pos < end:
        tag, pos = read_varint(data, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = read_varint(data, pos, end)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = read_varint(data, pos, end)
            if pos + length > end:
                raise WireError("truncated field")
            if number == field:
                yield pos, pos + length
            pos += length
        else:
            raise WireError(f"wire type {wire_type}")
    if pos > end:
        raise WireError("truncated field")


def over_limit(body: bytes, max_items: int) -> bool:
    """True once the items, or the resource and scope blocks together, pass `max_items`.
    False for a request within it, and for one that is not valid protobuf (left to the parser)."""
    blocks = items = 0
    try:
        for r_start, r_end in _children(body, 0, len(body), _PATH[0]):
            blocks += 1
            for s_start, s_end in _children(body, r_start, r_end, _PATH[1]):
                blocks += 1
                for _ in _children(body, s_start, s_end, _PATH[2]):
                    items += 1
                    if items > max_items:
                        return True
                if blocks > max_items:
                    return True
            if blocks > max_items:
                return True
    except WireError:
        return False
    return False
