"""glibc's mmap threshold fixed at its default (128 KiB) for the long-running sidecar.

Blocks above the threshold get their own mapping, handed back to the kernel when freed; smaller
ones come from the heap, which only shrinks from its top. glibc raises the threshold each time
a mapped block is freed (up to 32 MiB), so once the processors' large tables have resized a
few times (a dict of 100,000 keys is a multi-MB block), their new tables and gRPC's larger
buffers come from the heap and leave holes there when they are freed in turn. Measured with
`bench/memory_profile.py --duration 150` at 10,000 spans/s, every table full: RSS after 150 s
and 300 s 256.1 / 264.0 MB (peaks 261.8 / 269.4, over the pod's 256Mi), the heap holding
39 / 48 MB free; with the threshold fixed 228.9 / 226.1 MB (peaks 238.8 / 241.6), 10 MB free.
Setting the threshold explicitly is what turns glibc's adjustment off (mallopt(3)).

Why not higher, though it costs page faults (issue 15, rounds 14-15): at 10,000 spans/s the
exporter's merged request and gRPC's copy of it (~1.8 MB each per send, on worker threads) are
fresh mappings faulted in page by page, ~45 of the ~55 minor faults per 100 spans. Any setting
that serves them from the heap instead also leaves the heap the blocks between 128 KiB and the
new threshold that churn once tables are full. Same hour, `memory_profile.py --duration 150`,
one run each (RSS after 150 / 300 s): this setting 150.3 / 152.6 MB; mmap 2 MiB + trim 4 MiB
157.9 / 166.0 (faults 55 -> ~10 per 100 spans); that plus malloc_trim every 5 s 166.0 / 168.8;
128 KiB with trim threshold and top pad 4 MiB (big blocks from the heap's top when it has room)
162.3 / 162.1 (faults down a quarter to a half). The 10,000 spans/s peak itself moved within its noise
(94-100 MB). strace of mmap at full tables (150 s in): nearly every block over 128 KiB is the
exporter's (gRPC's copy and the join, ~8 MB/s); the tables' (KeyMap::resize, dictresize) come
while they fill. On the heap the exporter's blocks land in whatever holes the tables' growth
left, a different one each send: keeping them in one place (one thread, one arena, one buffer)
is what a higher threshold would need first.

Two more settings for the same process, both from issue 15's 10,000 spans/s point:
- at most `ARENAS` malloc arenas (M_ARENA_MAX). glibc gives each thread that contends for the
  main heap an arena of its own (up to 8 per core), each keeping its own free memory; gRPC's
  completion-queue and poller threads and the exporter's threads allocate there. The sidecar's
  own work runs on one event-loop thread, so more arenas hold more free memory, not more speed.
- the heap trimmed once start-up is done (`trim`): configuration parsing, schema building and
  imports leave free chunks inside the heap that glibc keeps until a trim.

A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value
ARENAS = 2  # the main heap and one for every other thread


def _libc_function(name: str):
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _mallopt(param: int, value: int) -> bool:
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(param, value) == 1


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix the threshold for this process's later allocations; False where it cannot be set."""
    return _mallopt(M_MMAP_THRESHOLD, threshold)


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas from now on (before the server's threads start); False
    where it cannot be set. `MALLOC_ARENA_MAX` in the environment does the same."""
    return _mallopt(M_ARENA_MAX, arenas)


def trim() -> bool:
    """Hand the free pages inside the heaps back to the kernel (malloc_trim(0)); True if any were."""
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return malloc_trim(0) == 1
