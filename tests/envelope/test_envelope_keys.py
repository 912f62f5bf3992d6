"""The written-key names code uses are exactly the contract's written fields (envelope.yaml)."""

from costctx.envelope import ENVELOPE
from costctx.envelope.keys import WRITTEN_KEYS


def test_written_keys_are_the_contracts_written_fields():
    assert sorted(WRITTEN_KEYS) == sorted(ENVELOPE.written_fields)
