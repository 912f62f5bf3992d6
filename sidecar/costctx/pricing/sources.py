"""Configured price sources, their last good tables, and reload on change.

A broken or missing file never empties a layer that once loaded: the last good table
stays in use and the reason is logged and counted. A file that never loaded is an empty
layer until it becomes valid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from costctx.pricing.archive import ArchivedVersion, PriceArchive
from costctx.pricing.litellm import parse_litellm
from costctx.pricing.table import PriceTable, full_digest
from costctx.pricing.watch import FileWatch
from costctx.pricing.yaml_table import builtin_bytes, parse_yaml_table

log = logging.getLogger("costctx.pricing")

BUILTIN, LITELLM, OVERRIDES = "builtin", "litellm", "overrides"


@dataclass(frozen=True)
class SourceSpec:
    type: str                    # builtin | litellm | overrides
    path: str | None = None
    name: str | None = None      # the label in cost.price_source; the type by default
    version: str | None = None   # a version label; else the file's own `version:` if any
    # A LiteLLM snapshot's period (UTC unix ns): its rows price spans that started in it.
    valid_from: int | None = None
    valid_until: int | None = None

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class ReloadEvent:
    source: str
    ok: bool
    detail: str


class PriceSources:
    def __init__(self, specs: list[SourceSpec], archive: PriceArchive | None = None) -> None:
        self.specs = specs
        # Every version loaded is archived: what a span was priced with stays re-priceable.
        self.archive = archive if archive is not None else PriceArchive()
        self._watches = {i: FileWatch(s.path) for i, s in enumerate(specs) if s.type != BUILTIN and s.path}
        self._tables: dict[int, PriceTable] = {}
        self._errors: dict[int, str] = {}  # the last failure per source, to report each once

    def tables(self) -> list[PriceTable]:
        """Loaded tables in config order (later wins)."""
        return [self._tables[i] for i in range(len(self.specs)) if i in self._tables]

    def refresh(self) -> list[ReloadEvent]:
        """Load what changed since last time (everything on the first call). Blocking file IO."""
        events: list[ReloadEvent] = []
        for index, spec in enumerate(self.specs):
            if spec.type == BUILTIN:
                if index not in self._tables:
                    data = builtin_bytes()
                    self._tables[index] = self._archived(spec, parse_source(spec, data), data)
                continue
            watch = self._watches[index]
            try:
                data = watch.read_if_changed()
                if data is None:
                    self._errors.pop(index, None)  # readable and unchanged: any earlier problem is over
                    continue
                table = self._archived(spec, parse_source(spec, data), data)
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if self._errors.get(index) == reason:
                    continue  # the same problem as last check: logged and counted once, not every tick
                self._errors[index] = reason
                kept = self._tables.get(index)
                log.error("price source %s (%s) not loaded: %s; %s", spec.label, spec.path, reason,
                          f"keeping {kept.source_id}" if kept else "no table from it yet")
                events.append(ReloadEvent(spec.label, False, reason))
                continue
            self._errors.pop(index, None)
            previous = self._tables.get(index)
            self._tables[index] = table
            log.info("price source %s loaded: %s (%d models)%s", spec.label, table.source_id, len(table.models),
                     f", replacing {previous.source_id}" if previous else "")
            events.append(ReloadEvent(spec.label, True, table.source_id))
        return events


    def _archived(self, spec: SourceSpec, table: PriceTable, data: bytes) -> PriceTable:
        version = ArchivedVersion(type=spec.type, name=spec.label, version=table.version, source_id=table.source_id,
                                  sha256=full_digest(data), valid_from=spec.valid_from, valid_until=spec.valid_until)
        try:
            self.archive.put(version, data)
        except OSError as exc:
            # Pricing goes on; only re-pricing this version later would be impossible.
            log.error("price archive: could not keep %s: %s", table.source_id, exc)
        return table


def parse_source(spec: SourceSpec, data: bytes) -> PriceTable:
    if spec.type == LITELLM:
        return parse_litellm(data, name=spec.label, version=spec.version, path=spec.path,
                             valid_from=spec.valid_from, valid_until=spec.valid_until)
    return parse_yaml_table(data, name=spec.label, version=spec.version, path=spec.path)


def archived_table(archive: PriceArchive, version: ArchivedVersion) -> PriceTable | None:
    """The table exactly as it was loaded (None when its bytes are gone)."""
    data = archive.data(version)
    if data is None:
        return None
    spec = SourceSpec(version.type, None, version.name, version.version, version.valid_from, version.valid_until)
    return parse_source(spec, data)
