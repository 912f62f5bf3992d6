"""OpenTelemetry schema files (file_format 1.x): attribute renames between schema versions.

A span written against schema version V gets the renames of every version newer than V up
to the file's own version, one version at a time, oldest first (`all` before the section
of its kind). Only allow-listed renames apply: applying every historical rename breaks live
data (1.26.0 renamed `enduser.id` to `user.id`; 1.31.0 made `enduser.id` current again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from costctx.normalize.alias_file import PLACES, RESOURCES, SPAN_EVENTS, SPANS

Version = tuple[int, ...]
SUPPORTED_FORMATS = ("1.0.0", "1.1.0")


class SchemaFileError(ValueError):
    """A schema file that cannot be used; the message names the file and the entry."""


def parse_version(text: str) -> Version:
    try:
        return tuple(int(part) for part in str(text).strip().split("."))
    except ValueError:
        raise ValueError(f"not a schema version: {text!r}") from None


def split_schema_url(url: str) -> tuple[str, Version] | None:
    """'https://opentelemetry.io/schemas/1.37.0' -> ('https://opentelemetry.io/schemas', (1, 37, 0))."""
    family, sep, version = url.rstrip("/").rpartition("/")
    if not sep or not family:
        return None
    try:
        return family, parse_version(version)
    except ValueError:
        return None


@dataclass
class VersionStep:
    """The attribute renames one version introduces, per place."""

    version: Version
    renames: dict[str, dict[str, str]] = field(default_factory=lambda: {p: {} for p in PLACES})
    # `spans` renames limited by `apply_to_spans`: (span names, attribute map).
    named_spans: list[tuple[frozenset[str], dict[str, str]]] = field(default_factory=list)
    # span_events renames limited to named spans or events: not applied (counted, see README).
    conditional: int = 0


@dataclass
class SchemaFile:
    path: str
    family: str
    version: Version
    steps: list[VersionStep]  # oldest first
    allow: frozenset[str] = frozenset()

    @property
    def skipped_conditional(self) -> int:
        return sum(s.conditional for s in self.steps)

    @property
    def span_names(self) -> frozenset[str]:
        """Span names some rename is limited to (each gets its own compiled table)."""
        return frozenset(name for step in self.steps for names, _ in step.named_spans for name in names)

    def renames_from(self, span_version: Version, span_name: str | None = None) -> dict[str, dict[str, str]]:
        """Composed, allow-listed renames per place (original key -> final key) for data at
        `span_version`; with `span_name`, the span renames limited to that name are included."""
        out: dict[str, dict[str, str]] = {p: {} for p in PLACES}
        for step in self.steps:
            if step.version <= span_version or step.version > self.version:
                continue
            for place in PLACES:
                composed = out[place]
                renames = step.renames[place]
                if span_name is not None and place == SPANS:
                    renames = dict(renames)
                    for names, mapping in step.named_spans:
                        if span_name in names:
                            renames.update(mapping)
                step_map = {o: n for o, n in renames.items() if o in self.allow or n in self.allow}
                if not step_map:
                    continue
                # A key renamed in an earlier step may be renamed again here: follow it.
                for original, current in list(composed.items()):
                    if current in step_map:
                        composed[original] = step_map[current]
                targets = set(composed.values())
                for old, new in step_map.items():
                    if old not in composed and old not in targets:
                        composed[old] = new
        for composed in out.values():
            for original in [o for o, n in composed.items() if o == n]:
                del composed[original]  # renamed away and back again
        return out


def _attribute_map(change: dict[str, Any], where: str) -> dict[str, str] | None:
    rename = change.get("rename_attributes")
    if rename is None:
        return None
    mapping = rename.get("attribute_map") if isinstance(rename, dict) else None
    if not isinstance(mapping, dict):
        raise SchemaFileError(f"{where}: rename_attributes needs an attribute_map")
    if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in mapping.items()):
        raise SchemaFileError(f"{where}: attribute_map maps attribute names to attribute names")
    return dict(mapping)


def _read_step(version: Version, body: Any, where: str) -> VersionStep:
    step = VersionStep(version)
    if not body:
        return step
    if not isinstance(body, dict):
        raise SchemaFileError(f"{where}: a version is a mapping of sections")
    section_places = {"all": PLACES, "resources": (RESOURCES,), "spans": (SPANS,), "span_events": (SPAN_EVENTS,)}
    # `all` applies before the section of the data's own kind.
    for section in ("all", "resources", "spans", "span_events"):
        part = body.get(section) or {}
        if not isinstance(part, dict):
            raise SchemaFileError(f"{where}.{section}: a section is a mapping with `changes`")
        changes = part.get("changes") or []
        if not isinstance(changes, list):
            raise SchemaFileError(f"{where}.{section}.changes: a list of changes")
        for i, change in enumerate(changes):
            if not isinstance(change, dict):
                raise SchemaFileError(f"{where}.{section}.changes[{i}]: a change is a mapping")
            mapping = _attribute_map(change, f"{where}.{section}.changes[{i}]")
            if mapping is None:
                continue  # rename_events, rename_metrics, split: not attribute renames
            rename = change["rename_attributes"]
            span_names = rename.get("apply_to_spans")
            if section == "spans" and span_names and not rename.get("apply_to_events"):
                if not isinstance(span_names, list) or not all(isinstance(n, str) for n in span_names):
                    raise SchemaFileError(f"{where}.{section}.changes[{i}]: apply_to_spans is a list of span names")
                step.named_spans.append((frozenset(span_names), mapping))
                continue
            if span_names or rename.get("apply_to_events"):
                step.conditional += len(mapping)
                continue
            for place in section_places[section]:
                step.renames[place].update(mapping)
    return step


def parse_schema_document(raw: Any, path: str, allow: list[str]) -> SchemaFile:
    if not isinstance(raw, dict):
        raise SchemaFileError(f"{path}: not an OpenTelemetry schema file")
    file_format = str(raw.get("file_format", ""))
    if file_format not in SUPPORTED_FORMATS:
        raise SchemaFileError(f"{path}: file_format {file_format!r} is not supported (use 1.1.0)")
    parsed = split_schema_url(str(raw.get("schema_url", "")))
    if parsed is None:
        raise SchemaFileError(f"{path}: schema_url must end in a version, like https://opentelemetry.io/schemas/1.37.0")
    family, version = parsed
    versions = raw.get("versions") or {}
    if not isinstance(versions, dict):
        raise SchemaFileError(f"{path}: versions must be a mapping")
    steps = []
    for text, body in versions.items():
        try:
            step_version = parse_version(text)
        except ValueError as exc:
            raise SchemaFileError(f"{path}: versions: {exc}") from None
        steps.append(_read_step(step_version, body, f"{path}: versions.{text}"))
    steps.sort(key=lambda s: s.version)
    return SchemaFile(path, family, version, steps, frozenset(allow))


def load_schema_file(path: str | Path, allow: list[str]) -> SchemaFile:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaFileError(f"cannot read schema file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SchemaFileError(f"schema file {path} is not valid YAML: {exc}") from None
    return parse_schema_document(raw, str(path), allow)
