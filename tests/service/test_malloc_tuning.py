"""The run command fixes glibc's mmap threshold: large blocks freed go back to the kernel."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# A 4 MiB block freed raises glibc's dynamic threshold to 4 MiB: the 1 MiB blocks after it come
# from the heap, between small blocks still in use, and freeing them gives nothing back. With the
# threshold fixed each has its own mapping and is returned when freed.
PROGRAM = """
import sys
from costctx.service.malloc_tuning import fix_mmap_threshold
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
fixed = fix_mmap_threshold() if sys.argv[1] == "fixed" else False
block = bytearray(4 << 20)
del block
big, small = [], []
for _ in range(100):
    big.append(bytearray(1 << 20))
    small.append(bytearray(2_000))
before = rss_mb()
del big
print(fixed, before - rss_mb())
"""


def run(how: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, how], capture_output=True, text=True, check=True,
                         timeout=60).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_with_the_threshold_fixed_freed_large_blocks_leave_the_process():
    fixed, returned = run("fixed")
    _, returned_dynamic = run("dynamic")
    assert fixed and returned > 80 and returned_dynamic < 20
