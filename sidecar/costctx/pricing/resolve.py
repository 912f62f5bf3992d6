"""Model-name resolution: which table row prices a span's model.

The documented order, for the response model first and then the request model:
1. the exact name (lower-cased): `gpt-4o-2024-08-06`;
2. the name qualified with the span's provider: `openai/gpt-4o-2024-08-06`, and with
   LiteLLM's prefix for an OpenTelemetry provider name (`gcp.gemini` -> `gemini/...`);
3. the name without its provider prefix(es): `openai/gpt-4o` -> `gpt-4o`, and Bedrock ids
   without vendor and version: `us.anthropic.claude-sonnet-4-5-20250929-v1:0` ->
   `claude-sonnet-4-5-20250929`;
4. the name without a dated-snapshot or version suffix: `gpt-4o-2024-08-06` -> `gpt-4o`,
   `claude-3-5-haiku-20241022` -> `claude-3-5-haiku`, `claude-3-5-sonnet@20240620`,
   `gemini-2.0-flash-001`, `mistral-large-2411`, `mistral-large-latest` -> the family name;
5. aliases from config (and from override files): the alias target, resolved by 1-4.
Within one table the first candidate found wins; across tables the later source wins
(see `PriceBook.resolve`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# -2024-08-06, -20241022, @20240620, -001, -2411, -latest (one suffix at a time, repeatedly).
_SUFFIX = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8})|-\d{3,4}|-latest)$")


# OpenTelemetry `gen_ai.provider.name` values -> the prefix LiteLLM keys use for that provider.
LITELLM_PREFIXES = {
    "gcp.gemini": "gemini", "gcp.gen_ai": "gemini", "gcp.vertex_ai": "vertex_ai", "aws.bedrock": "bedrock",
    "azure.ai.openai": "azure", "azure.ai.inference": "azure_ai", "mistral_ai": "mistral", "x_ai": "xai",
}
# Longer span model names are only looked up exactly (the longest LiteLLM key is ~100 characters).
MAX_DERIVED_NAME_LENGTH = 256
# Bedrock model ids: optional cross-region profile, vendor, and a -v1:0 style version.
_BEDROCK = re.compile(r"^(?:(?:us|eu|apac|global)\.)?(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek)\."
                      r"(?P<model>.+?)(?:-v\d+(?::\d+)?)?$")


def _strip_suffixes(name: str) -> list[str]:
    out = []
    while True:
        stripped = _SUFFIX.sub("", name)
        if stripped == name or not stripped:
            return out
        out.append(stripped)
        name = stripped


def candidates(model: str, provider: str | None = None,
               aliases: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(table key, how it was derived) in resolution order, without duplicates."""
    seen: dict[str, str] = {}

    def add(name: str, how: str) -> None:
        if name and name not in seen:
            seen[name] = how

    model = model.strip().lower()
    if len(model) > MAX_DERIVED_NAME_LENGTH:
        # Prefix and suffix stripping make O(parts x suffixes) names of O(length) each: a
        # 4 KB name of `a/` parts and `-001` suffixes took 12 s on the event loop. No model
        # id is this long; it is looked up as it is.
        add(model, "exact")
        return list(seen.items())
    _names(model, provider, add)
    if aliases:
        for name in list(seen):
            target = aliases.get(name)
            if target:
                label = f"alias {name} -> {target}"
                _names(target, provider,
                       lambda n, how, label=label: add(n, label if how == "exact" else f"{label}, {how}"))
    return list(seen.items())


def _names(model: str, provider: str | None, add) -> None:
    add(model, "exact")
    if provider and "/" not in model:
        provider = provider.lower()
        add(f"{provider}/{model}", "provider prefix")
        if provider in LITELLM_PREFIXES:
            add(f"{LITELLM_PREFIXES[provider]}/{model}", "provider prefix")
    bare = [model]
    bedrock = _BEDROCK.match(model)
    if bedrock:
        bare.append(bedrock.group("model"))
        add(bedrock.group("model"), "provider prefix")
    if "/" in model:
        parts = model.split("/")
        for i in range(1, len(parts)):
            suffix = "/".join(parts[i:])
            bare.append(suffix)
            add(suffix, "provider prefix")
    for name in bare:
        for stripped in _strip_suffixes(name):
            add(stripped, "dated snapshot")
