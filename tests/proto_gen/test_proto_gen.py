"""The checked-in generated code matches proto/costctx/v1/*.proto (regenerated and compared)."""

from __future__ import annotations

from pathlib import Path

from costctx.proto_gen import generate as gen

CHECKED_IN = Path(gen.__file__).resolve().parent


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = gen.generate(tmp_path)
    assert fresh, "protoc wrote nothing"
    stale = []
    for path in fresh:
        relative = path.relative_to(tmp_path)
        checked_in = CHECKED_IN / relative
        if not checked_in.exists() or checked_in.read_bytes() != path.read_bytes():
            stale.append(str(relative))
    assert not stale, f"regenerate with `python -m costctx.proto_gen.generate`: stale {stale}"


def test_envelope_message_carries_every_context_field() -> None:
    from costctx.envelope import ENVELOPE
    from costctx.proto_gen.costctx.v1 import envelope_pb2

    names = set(envelope_pb2.Envelope.DESCRIPTOR.fields_by_name)
    owner = set(envelope_pb2.Owner.DESCRIPTOR.fields_by_name)
    for key in ENVELOPE.context_keys:
        group, _, name = key.partition(".")
        if group == "owner":
            assert name in owner, key
        else:
            assert key.replace(".", "_") in names, key
