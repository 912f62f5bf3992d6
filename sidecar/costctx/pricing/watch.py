"""Notice when a price file changed on disk: stat first (cheap), then hash the content.

Polled from the processor's `tick`, so no watcher thread or inotify dependency is needed
and a file replaced by an atomic rename (how config management writes) is seen too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


@dataclass
class FileWatch:
    path: str
    stamp: tuple[int, int, int] | None = None   # (inode, mtime_ns, size) last seen
    sha256: str | None = None                   # content hash last seen

    def read_if_changed(self) -> bytes | None:
        """The new content when it differs from what was last seen, else None. Raises OSError."""
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self.stamp:
            return None
        with open(self.path, "rb") as handle:
            data = handle.read()
        self.stamp = stamp
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.sha256:
            return None  # touched, not changed
        self.sha256 = digest
        return data
