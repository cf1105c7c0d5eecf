"""A bounded memo for pure functions of a text: system prompts and conversation history come back with every
request of a conversation, and each content policy would otherwise scan them again each time.

Keyed by a 128-bit BLAKE2b digest of the text, so the memo holds no prompt text (only what the function
returned), and only results `keep` accepts: a small bound per entry, so that entries × that bound bounds the
memory. First in, first out. Safe to share between threads: a lost race costs one recomputation.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TextMemo(Generic[T]):
    def __init__(self, entries: int, keep: Callable[[T], bool]) -> None:
        self.entries = entries
        self.keep = keep
        self._results: dict[bytes, T] = {}

    def __len__(self) -> int:
        return len(self._results)

    def get(self, text: str, compute: Callable[[str], T]) -> T:
        """`compute(text)`, or what it returned for the same text lately."""
        key = text_digest(text)
        results = self._results
        found = results.get(key)
        if found is None:
            found = compute(text)
            if not self.keep(found):
                return found
            if len(results) >= self.entries:
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread was first
                    del results[next(iter(results))]
            results[key] = found
        return found
