"""What a content policy is: pure functions over text, no I/O, no knowledge of providers.

The gateway decides which texts of a request a policy sees (see gateway/guardrails.py) and what
its action (block, flag, redact, off) does; a policy only scores or rewrites text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    score: float  # 0 (benign) .. 1 (certainly an injection attempt)
    signals: tuple[str, ...]  # names of the signal families that fired, e.g. "instruction_override"


@dataclass(frozen=True, slots=True)
class PiiSpan:
    entity: str  # one of email, phone, credit_card, ssn, iban, ip_address, secret
    start: int
    end: int

    def value(self, text: str) -> str:
        return text[self.start : self.end]
