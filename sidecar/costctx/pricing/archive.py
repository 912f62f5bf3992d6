"""Every price-table version the sidecar has priced with, kept so any span can be re-priced.

`cost.price_source` records `name@version#digest` (and the dated period that applied). A
reload replaces the table in use, so re-pricing a disputed span needs the version it was
priced with: the archive keeps each version's bytes, content-addressed (sha256), with what
it takes to parse them again (type, name, version label, a snapshot's period). Bounded in
versions; on disk under a data directory when one is configured (it then outlives restarts
and upgrades of the built-in table), else in memory and bounded in bytes too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from costctx.pricing.table import PriceTable, full_digest

log = logging.getLogger("costctx.pricing")

DEFAULT_MAX_VERSIONS = 64
DEFAULT_MAX_MEMORY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ArchivedVersion:
    """How one loaded version was parsed; `sha256` names its bytes."""

    type: str                    # builtin | litellm | overrides
    name: str
    version: str | None
    source_id: str               # name@version#digest8, as written on spans
    sha256: str
    valid_from: int | None = None
    valid_until: int | None = None

    @property
    def key(self) -> str:
        # The same bytes loaded as two snapshots with different periods are two versions.
        return f"{self.source_id}|{self.valid_from}|{self.valid_until}"


Parser = Callable[[ArchivedVersion, bytes], PriceTable]


class PriceArchive:
    def __init__(self, directory: str | None = None, max_versions: int = DEFAULT_MAX_VERSIONS,
                 max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES) -> None:
        self.directory = Path(directory) if directory else None
        self.max_versions = max_versions
        self.max_memory_bytes = max_memory_bytes
        self._index: OrderedDict[str, ArchivedVersion] = OrderedDict()   # key -> version, oldest first
        self._bytes: dict[str, bytes] = {}                                # sha256 -> data (memory mode)
        self.evicted = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._load_index()

    # -- writing -------------------------------------------------------------------------
    def put(self, version: ArchivedVersion, data: bytes) -> None:
        if full_digest(data) != version.sha256:
            raise ValueError("archived bytes do not match their digest")
        self._index.pop(version.key, None)
        self._index[version.key] = version
        if self.directory is None:
            self._bytes[version.sha256] = data
        else:
            raw = self.directory / f"{version.sha256}.raw"
            if not raw.exists():
                _write_atomically(raw, data)
            _write_atomically(self._meta_path(version), json.dumps(asdict(version)).encode())
        self._evict()

    def _evict(self) -> None:
        def over() -> bool:
            if len(self._index) > self.max_versions:
                return True
            return self.directory is None and sum(len(b) for b in self._bytes.values()) > self.max_memory_bytes
        while len(self._index) > 1 and over():
            _, oldest = self._index.popitem(last=False)
            self.evicted += 1
            log.info("price archive: dropped %s (bound: %d versions)", oldest.source_id, self.max_versions)
            still_used = any(v.sha256 == oldest.sha256 for v in self._index.values())
            if self.directory is None:
                if not still_used:
                    self._bytes.pop(oldest.sha256, None)
            else:
                self._meta_path(oldest).unlink(missing_ok=True)
                if not still_used:
                    (self.directory / f"{oldest.sha256}.raw").unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------
    def versions(self) -> list[ArchivedVersion]:
        return list(self._index.values())

    def find(self, source: str) -> list[ArchivedVersion]:
        """Versions a recorded `cost.price_source` may name (its period suffix, if any, ignored)."""
        table_id = source.split("/", 1)[0]
        return [v for v in self._index.values() if v.source_id == table_id]

    def data(self, version: ArchivedVersion) -> bytes | None:
        if self.directory is None:
            return self._bytes.get(version.sha256)
        try:
            return (self.directory / f"{version.sha256}.raw").read_bytes()
        except OSError:
            return None

    # -- disk ----------------------------------------------------------------------------
    def _meta_path(self, version: ArchivedVersion) -> Path:
        assert self.directory is not None
        digest = full_digest(version.key.encode())[:16]
        return self.directory / f"{version.sha256}.{digest}.json"

    def _load_index(self) -> None:
        assert self.directory is not None
        found: list[tuple[float, ArchivedVersion]] = []
        for meta in self.directory.glob("*.json"):
            try:
                version = ArchivedVersion(**json.loads(meta.read_bytes()))
                found.append((meta.stat().st_mtime, version))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("price archive: ignoring %s: %s", meta, exc)
        for _, version in sorted(found, key=lambda item: item[0]):
            self._index[version.key] = version


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
