"""The cyclic garbage collector, tuned for a server whose heap is mostly long-lived.

By default CPython runs a young-generation collection every 700 container allocations, and each request
allocates thousands (parsed JSON, pydantic models, the record, asyncio futures and handles), while the
older generations are full of objects that live as long as the process (the compiled config, the
injection detector's tables, imported modules), which every older collection walks again. Timed with
`gc.callbacks` under `bench` load (every policy on, 128 connections, one CPU), once requests left no
reference cycles: with the defaults 3,400 collections in 27 s took 4.9 s of CPU; with these settings, none.

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
