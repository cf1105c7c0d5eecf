"""A bounded memo for pure functions of a text: system prompts and conversation history come back with every
request of a conversation, and each content policy would otherwise scan them again each time.

Keyed by a 128-bit BLAKE2b digest of the text, so the memo holds no prompt text (only what the function
returned), and only results `keep` accepts: a small bound per entry, so that entries × that bound bounds the
memory. Two generations of `entries` each: new results go to the young one; when it is full it becomes the old
one and the previous old one is dropped, so a text seen lately is found in O(1) and nothing is ever scanned to
evict (first-in-first-out eviction from a dict walks past every deleted slot at its head).

Shared by the event loop and the thread that scans large requests (gateway/policy_thread.py): a lookup and an
insert are single dict operations; a lost race costs one recomputation. Turning the generations is the one step
that must not race: it is done under a lock, and only if no other thread turned them since the caller looked, with
the young generation read after `compute` (a large text's scan is long, and the loop turns the generations
meanwhile: a turn from the generation seen before it would bring a stale one back and drop the newest).
"""

from __future__ import annotations

import hashlib
import threading
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
        self._turning = threading.Lock()

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def get(self, text: str, compute: Callable[[str], T]) -> T:
        """`compute(text)`, or what it returned for the same text lately."""
        key = text_digest(text)
        found = self._young.get(key)
        if found is not None:
            return found
        found = self._old.get(key)
        if found is None:
            found = compute(text)
            if not self.keep(found):
                return found
        young = self._young
        if len(young) >= self.entries:
            young = self._turn(young)
        young[key] = found  # a hit in the old generation moves up, so what is in use stays
        return found

    def _turn(self, full: dict[bytes, T]) -> dict[bytes, T]:
        """The young generation `full` becomes the old one (unless another thread turned it already); returns the
        young generation to insert into."""
        with self._turning:
            if self._young is full:
                self._old, self._young = full, {}
            return self._young
