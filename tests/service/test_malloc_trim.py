"""The run command's heap trimmer gives glibc's free heap pages back to the kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

from costctx.service.malloc_trim import libc_malloc_trim

# Heap blocks freed below one still in use: glibc's own free() cannot give them back (it only
# shrinks the heap from its top), malloc_trim can.
PROGRAM = """
import sys, time
from costctx.service.malloc_trim import start_trimmer
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
blocks = [bytearray(60_000) for _ in range(2_000)]
keep = blocks[-1]
del blocks
before = rss_mb()
stop = start_trimmer(0.05) if sys.argv[1] == "trim" else None
time.sleep(0.5)
print(before - rss_mb())
"""


@pytest.mark.skipif(libc_malloc_trim() is None, reason="no glibc malloc_trim here")
def test_the_trimmer_returns_free_heap_pages():
    freed = {how: float(subprocess.run([sys.executable, "-c", PROGRAM, how], capture_output=True, text=True,
                                       check=True, timeout=60).stdout) for how in ("trim", "none")}
    assert freed["trim"] > 50 and freed["none"] < 10
