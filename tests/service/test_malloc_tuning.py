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


# Threads that each allocate get a malloc arena each (glibc, up to 8 per core), each a 64 MiB
# reservation keeping free memory of its own; with the limit they share.
ARENAS = """
import sys, threading
from costctx.service.malloc_tuning import limit_arenas, trim
limited = limit_arenas() if sys.argv[1] == "limited" else False
held = []
together = threading.Barrier(6)  # all alive at once: an exited thread's arena is reused
def work():
    together.wait()
    held.append([bytearray(20_000) for _ in range(50)])
    together.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
arenas = 0
with open("/proc/self/maps") as f:
    for line in f:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        # an arena's heap: 64 MiB aligned, its start mapped read-write, anonymous
        if start % (64 << 20) == 0 and " rw-p " in line and len(line.split()) == 5:
            arenas += 1
print(limited, arenas, trim() in (True, False))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_with_arenas_limited_threads_share_two_arenas():
    def arenas(how: str) -> tuple[str, int, str]:
        out = subprocess.run([sys.executable, "-c", ARENAS, how], capture_output=True, text=True, check=True,
                             timeout=60).stdout.split()
        return out[0], int(out[1]), out[2]

    limited, with_limit, trimmed = arenas("limited")
    _, without, _ = arenas("default")
    assert limited == "True" and trimmed == "True"
    assert with_limit <= 1 < without  # the main heap is not an arena mapping: one more at most
