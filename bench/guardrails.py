"""Guardrail quality and cost: detection and false-positive rates of the injection detector on the
labelled corpus, PII span recall and precision on the generated corpus, and the time each policy
adds to one request. Run: .venv/bin/python bench/guardrails.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.injection import InjectionDetector  # noqa: E402
from policies.pii import ENTITIES, PiiScanner, Redaction  # noqa: E402
from tests.policies.pii_corpus import corpus, span_scores  # noqa: E402
from tests.policies.test_injection import THRESHOLD, generated_attacks, load  # noqa: E402

CHAT_TEXT = (
    "Hi! I'm planning a trip to Lisbon in May with my partner. We'd like a three-day itinerary with "
    "museums, a day trip to Sintra and a couple of good seafood restaurants. My email is "
    "ana.silva@example.org and my phone is +351 912 345 678 in case the hotel needs it. "
)


def per_call_us(fn: Callable[[], object], repeat: int = 7, number: int = 200) -> tuple[float, float]:
    """Median and best of `repeat` runs, in microseconds per call."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - started) / number * 1e6)
    return statistics.median(runs), min(runs)


def main() -> None:
    detector = InjectionDetector()
    attacks = load("injection_attacks.txt")
    every_attack = attacks + [text for _, text in generated_attacks(attacks)]
    benign = load("injection_benign.txt")
    detected = sum(detector.scan([a]).score >= THRESHOLD for a in every_attack)
    false_positives = sum(detector.scan([b]).score >= THRESHOLD for b in benign)
    print(f"injection  attacks {len(every_attack)} ({len(attacks)} written, the rest encoded/smuggled variants)")
    print(f"           detection rate      {detected / len(every_attack):.4f}")
    print(f"           benign {len(benign)}, false-positive rate {false_positives / len(benign):.4f}")

    samples = corpus()
    recall, precision = span_scores(PiiScanner(ENTITIES), samples)
    print(f"pii        samples {len(samples)}: span recall {recall:.4f}, precision {precision:.4f}")

    scanner = PiiScanner(ENTITIES)
    print("\ntime added per request (µs, median / best of 7×200), one user message of:")
    for size in (1024, 4096, 16384):
        text = (CHAT_TEXT * (size // len(CHAT_TEXT) + 1))[:size]
        injection = per_call_us(lambda text=text: detector.scan([text]))  # type: ignore[misc]

        def redact_and_restore(text: str = text) -> None:
            redaction = Redaction(scanner)
            redaction.restore(redaction.redact(text))

        pii = per_call_us(redact_and_restore)
        print(
            f"  {size:>6} B: injection {injection[0]:8.1f} / {injection[1]:8.1f}   "
            f"pii redact+restore {pii[0]:8.1f} / {pii[1]:8.1f}"
        )


if __name__ == "__main__":
    main()
