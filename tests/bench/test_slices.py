"""bench/slices.py on this kernel: the harness's short slice is inherited by what it starts (wrk, the mock), and the
servers under test, Redis and Postgres are started with the default one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench import slices

CHILD_SLICE = [sys.executable, "-c", "from bench import slices; print(slices.own_slice_ns())"]


@pytest.fixture
def short_slice() -> Iterator[None]:
    if slices.own_slice_ns() is None or not slices.shorten_own_slice():
        pytest.skip("this kernel has no slice a task may ask for (Linux 6.12 or later)")
    try:
        yield
    finally:
        slices.set_slice(0, 0)  # the default again


def child_slice() -> int:
    return int(subprocess.run(CHILD_SLICE, capture_output=True, text=True, check=True).stdout)


def test_what_the_harness_starts_inherits_its_short_slice(short_slice: None) -> None:
    assert slices.own_slice_ns() == slices.LOAD_SLICE_NS
    assert child_slice() == slices.LOAD_SLICE_NS


def test_servers_started_inside_default_slice_get_the_default_and_the_harness_keeps_its_own(
    short_slice: None,
) -> None:
    with slices.default_slice():
        started = child_slice()
    assert started != slices.LOAD_SLICE_NS and started > slices.LOAD_SLICE_NS
    assert slices.own_slice_ns() == slices.LOAD_SLICE_NS
