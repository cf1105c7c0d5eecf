"""The SSE decoder reads lines ending in LF, CRLF or a lone CR (the specification allows all three), cut
anywhere between reads, to the same events."""

from __future__ import annotations

import pytest

from adapters.base import SSEEvent
from adapters.sse import SSEDecoder

LINES = [
    ": keep-alive",
    "event: message_start",
    'data: {"type":"message_start"}',
    "",
    "data: first line",
    "data:second line",
    "",
    "data: [DONE]",
    "",
]
EXPECTED = [
    SSEEvent("message_start", '{"type":"message_start"}'),
    SSEEvent(None, "first line\nsecond line"),
    SSEEvent(None, "[DONE]"),
]


def decoded(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.flush()


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending_and_every_cut_give_the_same_events(ending: str) -> None:
    raw = ending.join(LINES).encode() + ending.encode()
    assert decoded([raw]) == EXPECTED
    assert decoded([raw[i : i + 1] for i in range(len(raw))]) == EXPECTED  # a byte at a time
    for cut in range(len(raw) + 1):
        assert decoded([raw[:cut], raw[cut:]]) == EXPECTED, cut
