"""A priced span's counter changes: the velocity buckets it names (formatted once per tenant
and bucket, so spans of another tenant or bucket must not get a cached pair)."""

from costctx.budget import counters as c
from costctx.budget.policy import Context, SpanSpend, commit_changes


def _velocity_changes(tenant: str, at: float) -> list[tuple[str, str, int, int]]:
    spend = SpanSpend(Context("wf-1", "answer", tenant, "", "", 0), 250, 10, 1, int(at * 1000), at, None)
    changes, where = commit_changes(spend, 3600.0, 60.0)
    return [changes[where["velocity.current"]], changes[where["velocity.previous"]]]


def test_the_current_bucket_adds_the_cost_and_the_previous_is_read_with_zero():
    assert _velocity_changes("acme|eu", 6_000.0) == [("v|acme%7Ceu|100", c.USD, 250, 180_000),
                                                     ("v|acme%7Ceu|99", c.USD, 0, 180_000)]


def test_each_tenant_and_bucket_names_its_own_keys():
    assert _velocity_changes("acme", 6_000.0)[0][0] == "v|acme|100"
    assert _velocity_changes("acme", 6_059.0)[0][0] == "v|acme|100"
    assert [ch[0] for ch in _velocity_changes("acme", 6_060.0)] == ["v|acme|101", "v|acme|100"]
    assert [ch[0] for ch in _velocity_changes("beta", 6_060.0)] == ["v|beta|101", "v|beta|100"]
