"""Count an OTLP request's resources, scopes and items on the wire, before parsing it.

Parsing makes a message of every item however small it is on the wire: 4 MiB of empty spans
(2 bytes each, 2M of them) took ~360 MB to parse before anything could count them. All three
OTLP export requests share one shape: field 1 of the request is a resource block, field 2
of a resource block a scope block, field 2 of a scope block an item (span, log record,
metric). This walks those three levels only, skipping everything else by its length, and
stops as soon as a count passes the limit: ~one step per item for a normal request.
"""

from __future__ import annotations

try:
    from costctx_native._core import over_limit as native_over_limit  # type: ignore[import-not-found]
except ImportError:  # built without the extension (or an older build): the Python walk below
    native_over_limit = None

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


def _field(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(field number, start, end) of the length-delimited value at `pos`, or (-1, pos after the
    field, 0) for any other wire type. One- and two-byte varints (every tag and most lengths in
    OTLP) are read inline: this runs once per item of every request received."""
    tag = data[pos]
    if tag < 0x80:
        pos += 1
    else:
        tag, pos = read_varint(data, pos, end)
    wire_type = tag & 7
    if wire_type == 2:
        if pos < end and data[pos] < 0x80:
            length = data[pos]
            pos += 1
        elif pos + 1 < end and data[pos + 1] < 0x80:
            length = (data[pos] & 0x7F) | (data[pos + 1] << 7)
            pos += 2
        else:
            length, pos = read_varint(data, pos, end)
        if pos + length > end:
            raise WireError("truncated field")
        return tag >> 3, pos, pos + length
    if wire_type == 0:
        _, pos = read_varint(data, pos, end)
    elif wire_type == 1:
        pos += 8
    elif wire_type == 5:
        pos += 4
    else:
        raise WireError(f"wire type {wire_type}")
    return -1, pos, 0


def _children(data: bytes, start: int, end: int, field: int):
    """(start, end) of each length-delimited `field` in the message data[start:end]."""
    pos = start
    while pos < end:
        number, value_start, value_end = _field(data, pos, end)
        if number < 0:
            pos = value_start
            continue
        if number == field:
            yield value_start, value_end
        pos = value_end
    if pos > end:
        raise WireError("truncated field")


def _count(data: bytes, start: int, end: int, field: int, limit: int) -> int:
    """How many `field` values the message data[start:end] holds, stopping once past `limit`."""
    pos = start
    found = 0
    while pos < end:
        number, value_start, value_end = _field(data, pos, end)
        if number < 0:
            pos = value_start
            continue
        if number == field:
            found += 1
            if found > limit:
                return found
        pos = value_end
    if pos > end:
        raise WireError("truncated field")
    return found


def over_limit(body: bytes, max_items: int) -> bool:
    """True once the items, or the resource and scope blocks together, pass `max_items`.
    False for a request within it, and for one that is not valid protobuf (left to the parser).
    Every request received runs this: in Rust when built (native/src/wire_count.rs, the same
    answer; ~50 us per 100-span request in Python), else in Python."""
    if native_over_limit is not None and type(body) is bytes and 0 <= max_items < 2**63:
        return native_over_limit(body, max_items)
    return python_over_limit(body, max_items)


def python_over_limit(body: bytes, max_items: int) -> bool:
    """`over_limit` in Python: the fallback and the oracle of the Rust walk."""
    blocks = items = 0
    try:
        for r_start, r_end in _children(body, 0, len(body), _PATH[0]):
            blocks += 1
            for s_start, s_end in _children(body, r_start, r_end, _PATH[1]):
                blocks += 1
                items += _count(body, s_start, s_end, _PATH[2], max_items - items)
                if items > max_items:
                    return True
                if blocks > max_items:
                    return True
            if blocks > max_items:
                return True
    except WireError:
        return False
    return False
