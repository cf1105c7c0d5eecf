"""An upstream stream, opened and read up to its first chunk before the client's response starts.

A provider may answer 200 and then fail in its first event (Anthropic's `overloaded_error`), or send no
event at all. Until a chunk for the client exists nothing has been promised to it, so that is a failed
attempt, which the failover may retry or hand to a fallback. What was read ahead is kept, translated, for
the relay to send first; the relay then reads on (`read`, then `flush` once the body has ended), each
upstream piece decoded and translated here, in one place.
"""

from __future__ import annotations

from adapters.base import JSON, SSEEvent, StreamTranslator
from adapters.sse import SSEDecoder
from gateway.upstream import UpstreamResponse


class OpenedStream:
    __slots__ = ("_decoder", "ended", "pending", "response", "translator")

    def __init__(self, response: UpstreamResponse, translator: StreamTranslator) -> None:
        self.response = response
        self.translator = translator
        self._decoder = SSEDecoder()
        self.pending: list[JSON] = []  # translated before the client's response started
        self.ended = False  # the upstream body has ended

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
            chunks = await self.read()
            if chunks is None:
                self.pending.extend(self.flush())  # a last event with no blank line after it still counts
                return
            self.pending.extend(chunks)

    async def read(self) -> list[JSON] | None:
        """The chunks of the next upstream piece (up to an error or the end of the answer, where the translator
        takes nothing more); None when the body has ended."""
        piece = await self.response.read_piece()
        if not piece:
            self.ended = True
            return None
        return self._translate(self._decoder.feed(piece))

    def flush(self) -> list[JSON]:
        """Once the body has ended: the chunks of what its last lines still held."""
        return self._translate(self._decoder.flush())

    def _translate(self, events: list[SSEEvent]) -> list[JSON]:
        translator = self.translator
        chunks: list[JSON] = []
        for event in events:
            chunks.extend(translator.feed(event))
            if translator.error is not None or translator.done:
                break
        return chunks
