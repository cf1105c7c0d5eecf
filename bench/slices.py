"""Short scheduler slices for the load generator and the mock, so the database beside them cannot hold them up.

wrk, the mock (nginx), the harness's streaming client, Redis and Postgres share CPU 0. Linux's scheduler (EEVDF,
since 6.6) lets a running task finish its slice (1.4 ms here) before a task that wakes up may take the CPU: while
Postgres inserts a batch of the gateway's usage events, the mock's answer and wrk's next request each waited behind
it, which put milliseconds into the gateway's one-connection p99 that no server under test spends (wrk straight to
the mock: 25-35 µs of p99 idle, 1.3-1.9 ms beside a Postgres taking 200-row batches). The harness asks a 0.1 ms slice
(`sched_setattr`, Linux 6.12 or later) for itself, and so for what it starts, but for the servers under test and
Redis and Postgres, which are started with the default: the load generator and the mock then take the CPU as soon as
they wake up, as they would on machines of their own. On an older kernel nothing changes (the call is refused).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
from collections.abc import Iterator

LOAD_SLICE_NS = 100_000  # the shortest slice Linux grants
SCHED_ATTR = struct.Struct("IIQiIQQQII")  # struct sched_attr (size, policy, flags, nice, priority, runtime, ...)
SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr


def _syscall(number: int, *args: object) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.syscall(number, *args) == 0)


def own_slice_ns() -> int | None:
    """The calling process's slice, or None where it cannot be read."""
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    buffer = ctypes.create_string_buffer(SCHED_ATTR.size)
    if not _syscall(numbers[1], 0, buffer, SCHED_ATTR.size, 0):
        return None
    return int(SCHED_ATTR.unpack(buffer.raw)[5])


def set_slice(pid: int, slice_ns: int) -> bool:
    """Ordinary scheduling (SCHED_OTHER, nice 0) with a slice of `slice_ns` for `pid` (0: the caller; a slice of 0:
    the default); False where the kernel refuses it."""
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return False
    attr = SCHED_ATTR.pack(SCHED_ATTR.size, 0, 0, 0, 0, slice_ns, 0, 0, 0, 0)
    return _syscall(numbers[0], pid, ctypes.create_string_buffer(attr, SCHED_ATTR.size), 0)


@contextlib.contextmanager
def default_slice() -> Iterator[None]:
    """The caller's slice set to the default while what it starts inside is forked (children inherit it)."""
    own = own_slice_ns()
    changed = own is not None and set_slice(0, 0)
    try:
        yield
    finally:
        if changed and own is not None:
            set_slice(0, own)


def shorten_own_slice() -> bool:
    """The harness's own slice (and so that of wrk and the mock, which it starts) made the shortest."""
    return os.name == "posix" and set_slice(0, LOAD_SLICE_NS)
