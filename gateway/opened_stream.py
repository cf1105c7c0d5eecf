"""An upstream stream, opened and read up to its first chunk before the client's response starts.

A provider may answer 200 and then fail in its first event (Anthropic's `overloaded_error`), or send no
event at all. Until a chunk for the client exists nothing has been promised to it, so that is a failed
attempt, which the failover may retry or hand to a fallback. What was read ahead is kept, translated, for
the relay to send first; the relay then reads on from the same iterator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from adapters.base import JSON, StreamTranslator
from adapters.sse import SSEDecoder
from gateway.upstream import UpstreamResponse


class OpenedStream:
    __slots__ = ("decoder", "ended", "pending", "pieces", "response", "translator")

    def __init__(self, response: UpstreamResponse, translator: StreamTranslator) -> None:
        self.response = response
        self.translator = translator
        self.decoder = SSEDecoder()
        self.pieces: AsyncIterator[bytes] = response.chunks()  # one iterator: the relay reads on from it
        self.pending: list[JSON] = []  # translated before the client's response started
        self.ended = False  # the upstream body ended while reading ahead

    @property
    def failed_before_first_chunk(self) -> bool:
        """Nothing for the client, and an error event or the end of the body instead."""
        translator = self.translator
        return not self.pending and (translator.error is not None or (self.ended and not translator.done))

    async def read_first(self) -> None:
        """Reads whole upstream pieces until the translator has a chunk for the client, has failed or is
        done, or the body ends. Raises what reading raises (UpstreamConnectError, SSELineTooLong)."""
        translator = self.translator
        while not (self.pending or translator.error is not None or translator.done):
            try:
                piece = await anext(self.pieces)
            except StopAsyncIteration:
                self.ended = True  # a last event with no blank line after it still counts
                for event in self.decoder.flush():
                    self.pending.extend(translator.feed(event))
                return
            for event in self.decoder.feed(piece):
                self.pending.extend(translator.feed(event))
                if translator.error is not None or translator.done:
                    break
