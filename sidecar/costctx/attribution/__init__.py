"""Attribution across sidecars: the shared context registry (and, later, settlement)."""
