"""The SSE decoder reads lines ending in LF, CRLF or a lone CR (the specification allows all three), cut
anywhere between reads, to the same events."""

from __future__ import annotations

import pytest

from adapters.base import SSEEvent
from adapters.sse import SSEDecoder, SSELineTooLong

LINES = [
    ": keep-alive",
    "event: message_start",
    'data: {"type":"message_start"}',
    "",
    "data: first line",
    "data:second line",
    "",
    "id: 7",
    "retry: 100",
    "data: h\u00e9llo \u2713",
    "data",
    "data:  spaced",
    "",
    "event:ping",
    "",
    "data: [DONE]",
    "",
    "data: no blank line after it",
]
EXPECTED = [
    SSEEvent("message_start", '{"type":"message_start"}'),
    SSEEvent(None, "first line\nsecond line"),
    SSEEvent(None, "h\u00e9llo \u2713\n\n spaced"),
    SSEEvent("ping", ""),
    SSEEvent(None, "[DONE]"),
    SSEEvent(None, "no blank line after it"),
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


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: " + b"x" * 1100],  # one line, at once
        [b"data: "] + [b"x" * 10] * 110,  # one line, in small pieces
        [b"data: " + b"x" * 100 + b"\n"] * 11,  # one event of many lines, no blank line
    ],
    ids=["line", "line-in-pieces", "event-of-many-lines"],
)
def test_a_line_or_an_event_over_the_limit_is_refused(pieces: list[bytes]) -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(SSELineTooLong):
        for piece in pieces:
            decoder.feed(piece)


def test_events_under_the_limit_pass_and_the_count_starts_again_with_each() -> None:
    decoder = SSEDecoder(max_line_bytes=1000)
    events = []
    for _ in range(5):  # 5 events of 900 bytes: 4,500 in all, each under the limit
        events += decoder.feed(b"data: " + b"x" * 450 + b"\ndata: " + b"y" * 450 + b"\n\n")
    assert len(events) == 5 and all(len(event.data) == 901 for event in events)
