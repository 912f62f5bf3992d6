"""The alias table covers FACTS.md; schema files compose and filter renames as specified."""

from __future__ import annotations

import contextlib
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from costctx.envelope import ENVELOPE
from costctx.normalize.alias_file import AliasFileError, builtin_aliases, parse_alias_document
from costctx.normalize.schema_file import SchemaFileError, parse_schema_document
from costctx.normalize.table import TableBuilder
from tests.support.paths import REPO

# The renames section of the reference facts, kept in the repository (tests read only the repository).
FACTS = REPO / "tests" / "fixtures" / "renames_reference.md"


def builder(**kwargs) -> TableBuilder:
    defaults = {"user_sets": [], "builtin": builtin_aliases(), "schema_files": [],
                "envelope_types": dict(ENVELOPE.field_types)}
    return TableBuilder(**{**defaults, **kwargs})


def resolve(key: str) -> str:
    rule = builder().base().spans.rules.get(key)
    return rule.canonical if rule else key


def facts_renames() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(key renames, provider value renames) written as `old` -> `new` in the renames reference."""
    text = FACTS.read_text(encoding="utf-8")
    bullets = re.split(r"\n- ", " ".join(text.split("\n  ")))
    pair = re.compile(r"((?:`[^`]+`\s*/\s*)*`[^`]+`)\s*->\s*`([^`]+)`")
    keys, values = [], []
    for bullet in bullets:
        target = values if bullet.startswith("Renamed enum values") else keys
        for olds, new in pair.findall(bullet):
            target.extend((old, new) for old in re.findall(r"`([^`]+)`", olds))
    return keys, values


def test_every_rename_in_facts_is_in_the_table():
    keys, values = facts_renames()
    assert len(keys) >= 17 and len(values) == 5  # the parser found the lists
    for old, new in keys:
        # `enduser.id` -> `user.id`: both are aliases of owner.user in the envelope
        assert resolve(old) == resolve(new), (old, new)
        assert old != resolve(old), f"{old} is not renamed"
    table = builder().base()
    for old, new in values:
        assert table.values["gen_ai.provider.name"][old] == new


def test_table_names_the_other_known_keys():
    # Listed in FACTS.md without an arrow to a backticked key.
    expected = {
        "llm.system": "gen_ai.provider.name", "llm.model_name": "gen_ai.response.model",
        "llm.request.model_name": "gen_ai.request.model", "llm.response.model_name": "gen_ai.response.model",
        "llm.vendor": "gen_ai.provider.name", "llm.request.model": "gen_ai.request.model",
        "llm.response.model": "gen_ai.response.model", "llm.usage.prompt_tokens": "gen_ai.usage.input_tokens",
        "llm.usage.completion_tokens": "gen_ai.usage.output_tokens", "traceloop.workflow.name": "workflow.name",
        "gen_ai.workflow.name": "workflow.name", "llm.cost.total": "gen_ai.usage.cost",
        "gen_ai.cost.total_cost": "gen_ai.usage.cost", "llm.provider": "gen_ai.provider.name",
    }
    assert {key: resolve(key) for key in expected} == expected
    table = builder().base()
    assert table.spans.rules["llm.provider"].fallback
    assert table.types["gen_ai.usage.cost"] == "double"
    assert table.types["gen_ai.usage.input_tokens"] == "int"


def schema(versions: dict, version: str = "1.40.0", allow=("*",)) -> object:
    raw = {"file_format": "1.1.0", "schema_url": f"https://opentelemetry.io/schemas/{version}", "versions": versions}
    return parse_schema_document(yaml.safe_load(yaml.safe_dump(raw)), "test.yaml", list(allow))


def renames(key_map: dict, section: str = "all", **extra) -> dict:
    return {section: {"changes": [{"rename_attributes": {"attribute_map": key_map, **extra}}]}}


def test_schema_versions_chain_oldest_first_and_stop_at_the_data_version():
    file = schema({
        "1.40.0": renames({"b": "c"}),
        "1.30.0": renames({"a": "b"}, "spans"),
        "1.20.0": renames({"x": "y"}),
        "1.10.0": None,
    }, allow=["a", "b", "c", "x"])
    assert file.renames_from((1, 10, 0))["spans"] == {"x": "y", "a": "c", "b": "c"}
    assert file.renames_from((1, 10, 0))["resources"] == {"x": "y", "b": "c"}  # `a -> b` was spans-only
    assert file.renames_from((1, 30, 0))["spans"] == {"b": "c"}
    assert file.renames_from((1, 40, 0))["spans"] == {}


def test_schema_allow_list_and_conditional_renames():
    file = schema({
        "1.31.0": renames({"db.q": "db.query"}, "spans", apply_to_spans=["query", "exec"]),
        "1.26.0": renames({"enduser.id": "user.id", "gen_ai.x": "gen_ai.y"}),
        "1.25.0": renames({"ev.a": "ev.b"}, "span_events", apply_to_events=["exception"]),
    }, version="1.31.0", allow=["gen_ai.y", "db.q", "ev.a"])  # `gen_ai.y` names the new key
    assert file.renames_from((1, 0, 0))["spans"] == {"gen_ai.x": "gen_ai.y"}
    assert file.renames_from((1, 0, 0), "query")["spans"] == {"gen_ai.x": "gen_ai.y", "db.q": "db.query"}
    assert file.renames_from((1, 0, 0), "other")["spans"] == {"gen_ai.x": "gen_ai.y"}
    assert file.span_names == {"query", "exec"}
    assert file.skipped_conditional == 1  # renames limited to named events are not applied
    b = builder(builtin=None, schema_files=[file])
    table = b.for_schema_url("https://opentelemetry.io/schemas/1.0.0")
    assert "db.q" not in table.spans.rules
    assert table.named_spans["exec"].rules["db.q"].canonical == "db.query"


def test_schema_url_of_another_family_gets_no_schema_renames():
    file = schema({"1.40.0": renames({"old.k": "new.k"})}, allow=["old.k"])
    b = builder(builtin=None, schema_files=[file])
    assert "old.k" in b.for_schema_url("https://opentelemetry.io/schemas/1.0.0").spans.rules
    assert "old.k" not in b.for_schema_url("https://example.com/schemas/1.0.0").spans.rules
    assert "old.k" not in b.for_schema_url("").spans.rules
    assert "old.k" not in b.for_schema_url("not a url").spans.rules
    # Nothing to rename for these URLs: they share the base table rather than a compiled copy.
    assert b.for_schema_url("https://example.com/schemas/1.0.0") is b.base()
    assert b.for_schema_url("https://opentelemetry.io/schemas/1.40.0") is b.base()
    assert b.for_schema_url("https://opentelemetry.io/schemas/1.0.0") is not b.base()


def test_user_rules_take_precedence_and_chains_resolve():
    user = parse_alias_document({"aliases": {"enduser.id": "owner.team", "my.tokens": "llm.token_count.prompt"}}, "u")
    rules = builder(user_sets=[user]).base().spans.rules
    assert rules["enduser.id"].canonical == "owner.team"
    assert rules["my.tokens"].canonical == "gen_ai.usage.input_tokens"  # followed through the built-in table
    assert rules["my.tokens"].rank < rules["llm.token_count.prompt"].rank


def test_alias_cycles_and_bad_entries_are_errors():
    cycle = parse_alias_document({"aliases": {"owner.user": "user.id"}}, "u")
    with pytest.raises(AliasFileError, match="alias cycle"):
        builder(user_sets=[cycle]).base()
    with pytest.raises(AliasFileError, match="listed twice"):
        parse_alias_document({"aliases": [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}]}, "u")
    with pytest.raises(AliasFileError, match="apply_to"):
        parse_alias_document({"aliases": [{"from": "a", "to": "b", "apply_to": ["logs"]}]}, "u")
    with pytest.raises(AliasFileError, match="go together"):
        parse_alias_document({"aliases": [{"from": "a", "to": "b", "requires_any": ["x"]}]}, "u")


def test_conditional_target_follows_chains():
    user = parse_alias_document({"aliases": [
        {"from": "my.model", "to": "llm.response.model_name", "requires_any": ["my.answer"],
         "otherwise": "llm.request.model_name"},
    ]}, "u")
    rule = builder(user_sets=[user]).base().spans.rules["my.model"]
    assert rule.target({"my.answer"}) == "gen_ai.response.model"
    assert rule.target({"other"}) == "gen_ai.request.model"


# Any YAML a user may point the config at: the loaders answer with their own error, never crash.
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(
        ["1.1.0", "1.2.0", "https://opentelemetry.io/schemas/1.2.0", "all", "spans", "changes", "a.b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["file_format", "schema_url", "versions", "1.0.0", "1.2.0", "all", "spans", "span_events",
                         "resources", "changes", "rename_attributes", "attribute_map", "apply_to_spans",
                         "aliases", "values", "types", "from", "to", "apply_to", "fallback", "requires_any",
                         "otherwise", "x"]),
        inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(yaml_values)
def test_loaders_never_crash_on_odd_files(raw):
    with contextlib.suppress(SchemaFileError):
        parse_schema_document(raw, "odd.yaml", ["a.b"]).renames_from((1, 0, 0))
    with contextlib.suppress(AliasFileError):
        builder(user_sets=[parse_alias_document(raw, "odd.yaml")]).base()


SCHEMA_HEAD = {"file_format": "1.1.0", "schema_url": "https://opentelemetry.io/schemas/1.2.0"}


@pytest.mark.parametrize("versions", [
    {"1.0.0": {"all": [1]}},
    {"1.0.0": {"all": {"changes": {"a": 1}}}},
    {"1.0.0": {"all": {"changes": [{"rename_attributes": [1]}]}}},
    {"1.0.0": {"all": {"changes": [{"rename_attributes": {"attribute_map": {"a": None}}}]}}},
    {"x.y": None},
    [1],
])
def test_odd_schema_files_are_errors(versions):
    with pytest.raises(SchemaFileError):
        parse_schema_document({**SCHEMA_HEAD, "versions": versions}, "odd.yaml", ["a"])


@pytest.mark.parametrize("raw", [
    {"aliases": [{"from": "a", "to": "b", "apply_to": None}]},
    {"aliases": [{"from": "a", "to": "b", "fallback": "no"}]},
    {"aliases": [{"from": "a", "to": "b", "requires_any": "x", "otherwise": "c"}]},
    {"aliases": {"a": None}},
    {"aliases": "x"},
    {"values": [1]},
    {"values": {"k": {"a": None}}},
    {"types": [1]},
    {"types": {"k": "float"}},
    [1],
])
def test_odd_alias_files_are_errors(raw):
    with pytest.raises(AliasFileError):
        parse_alias_document(raw, "odd.yaml")
