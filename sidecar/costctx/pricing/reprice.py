"""Re-pricing a recorded span exactly: the table version its `cost.price_source` names, at
the instant of the period that priced it."""

from __future__ import annotations

from collections.abc import Iterable

from costctx.pricing.archive import PriceArchive
from costctx.pricing.sources import archived_table
from costctx.pricing.table import PriceTable, parse_instant


class SourceNotFound(LookupError):
    pass


def split_source(source: str) -> tuple[str, str | None]:
    """`builtin@v#d/o3@..2025-06-10` -> (`builtin@v#d`, `o3@..2025-06-10`)."""
    table_id, _, entry = source.partition("/")
    return table_id, entry or None


def period_instant(entry: str) -> int:
    """An instant inside a recorded period (`model@FROM..UNTIL`): its start, else just before its end."""
    _, _, period = entry.rpartition("@")
    start, sep, end = period.partition("..")
    if not sep or not (start or end):
        raise ValueError(f"not a price period: {entry!r} (expected model@FROM..UNTIL)")
    if start:
        return parse_instant(start, "period start")
    return parse_instant(end, "period end") - 1


def table_for_source(source: str, archive: PriceArchive, current: Iterable[PriceTable] = ()) -> PriceTable:
    """The table version `source` names: one loaded now, else one from the archive."""
    table_id, _ = split_source(source)
    if table_id.startswith("reported:"):
        raise SourceNotFound(f"{source!r} is a provider-reported cost, not a price table")
    for table in current:
        if table.source_id == table_id:
            return table
    for version in reversed(archive.find(table_id)):
        table = archived_table(archive, version)
        if table is not None:
            return table
    known = sorted({v.source_id for v in archive.versions()} | {t.source_id for t in current})
    raise SourceNotFound(f"price table {table_id!r} is not in the archive (known: {', '.join(known) or 'none'})")
