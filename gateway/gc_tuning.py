"""The cyclic garbage collector, tuned for a server whose heap is mostly long-lived.

By default CPython runs a young-generation collection every 700 container allocations, and each request
allocates thousands (parsed JSON, pydantic models, the record, asyncio futures and handles), while the
older generations are full of objects that live as long as the process (the compiled config, the
injection detector's tables, imported modules), which every older collection walks again. Measured with
`bench` (every policy on, 128 connections, one CPU): CPU per request 1.23–1.47 ms with the defaults,
1.16–1.26 ms with a larger first threshold, 1.04–1.20 ms with it and the start-up heap frozen.

Reference counting still frees almost everything at once; only cycles wait longer (up to `GEN0_THRESHOLD`
allocations: a few MB at most). The soak benchmark (`python -m bench --soak 10m`) checks that memory stays flat.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune_garbage_collector() -> None:
    """Once the app is built: what exists now lives as long as the process, so it is collected once and then
    left out of every later collection (`gc.freeze`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
