"""A bounded memo for pure functions of a text: system prompts and conversation history come back with every
request of a conversation, and each content policy would otherwise scan them again each time.

Keyed by a 128-bit BLAKE2b digest of the text, so the memo holds no prompt text (only what the function
returned), and only results `keep` accepts: a small bound per entry, so that entries × that bound bounds the
memory. Two generations of `entries` each: new results go to the young one; when it is full it becomes the old
one and the previous old one is dropped, so a text seen lately is found in O(1) and nothing is ever scanned to
evict (first-in-first-out eviction from a dict walks past every deleted slot at its head). Safe to share between
threads: a lost race costs one recomputation.
"""

from __future__ import annotations

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
        self._young: dict[bytes, T] = {}
        self._old: dict[bytes, T] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, text: str, compute: Callable[[str], T]) -> T:
        """`compute(text)`, or what it returned for the same text lately."""
        key = text_digest(text)
        young = self._young
        found = young.get(key)
        if found is not None:
            return found
        found = self._old.get(key)
        if found is None:
            found = compute(text)
            if not self.keep(found):
                return found
        if len(young) >= self.entries:
            self._old, self._young = young, {key: found}
        else:
            young[key] = found  # a hit in the old generation moves up, so what is in use stays
        return found
