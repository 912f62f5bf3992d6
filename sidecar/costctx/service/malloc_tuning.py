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

A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix the threshold for this process's later allocations; False where it cannot be set."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
