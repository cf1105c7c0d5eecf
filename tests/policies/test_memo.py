"""The content policies' memo: a text seen lately is not scanned again, and the answer is the same as a scan's.

The equivalence checks scan the whole injection corpus (plain, and the encoded, smuggled and obfuscated variants,
which use several regions per text) in mixed multi-text requests, cold and then warm, against a detector that
never remembers anything.
"""

from __future__ import annotations

import random
import threading

import pytest

from policies.injection import InjectionDetector
from policies.memo import TextMemo
from policies.pii import MEMO_MAX_SPANS, PiiScanner
from tests.policies.test_injection import generated_attacks, load


class Counted:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, text: str) -> int:
        self.calls.append(text)
        return len(text)


def test_a_text_is_computed_once_while_in_one_of_the_two_generations() -> None:
    memo: TextMemo[int] = TextMemo(2, keep=lambda _: True)
    compute = Counted()
    for text in ("a", "b", "a"):
        memo.get(text, compute)
    assert compute.calls == ["a", "b"]
    memo.get("c", compute)  # the young generation is full: it becomes the old one
    assert memo.get("a", compute) == 1  # found in the old generation, and moved up to the young one
    assert compute.calls == ["a", "b", "c"]
    memo.get("d", compute)  # full again: {a, b} is dropped, {c, a} is old
    memo.get("a", compute)
    memo.get("b", compute)
    assert compute.calls == ["a", "b", "c", "d", "b"]
    assert len(memo) <= 2 * memo.entries


def test_the_memo_stays_bounded_under_a_stream_of_new_texts() -> None:
    memo: TextMemo[int] = TextMemo(100, keep=lambda _: True)
    for i in range(10_000):
        memo.get(f"text {i}", len)
        assert len(memo) <= 200


def test_results_keep_refuses_are_not_remembered() -> None:
    memo: TextMemo[int] = TextMemo(10, keep=lambda n: n < 3)
    compute = Counted()
    for text in ("long text", "ab", "long text", "ab"):
        memo.get(text, compute)
    assert compute.calls == ["long text", "ab", "long text"]
    assert len(memo) == 1


def test_the_memo_holds_no_text() -> None:
    secret = "my password is hunter2-and-then-some"
    memo: TextMemo[int] = TextMemo(10, keep=lambda _: True)
    memo.get(secret, len)
    keys = list(memo._young) + list(memo._old)
    assert len(keys) == 1 and len(keys[0]) == 16
    assert b"hunter2" not in keys[0] and secret.encode() not in keys[0]


def never_remembers(detector: InjectionDetector) -> InjectionDetector:
    detector._memo = TextMemo(1, keep=lambda _: False)
    return detector


def test_injection_verdicts_are_the_same_from_the_memo() -> None:
    texts = load("injection_attacks.txt") + load("injection_benign.txt")
    texts += [text for _, text in generated_attacks(load("injection_attacks.txt"))]
    rng = random.Random(6)
    requests = [[t] for t in texts] + [rng.sample(texts, rng.randint(2, 4)) for _ in range(1500)]
    cold = never_remembers(InjectionDetector())
    warm = InjectionDetector()
    expected = [cold.scan(r) for r in requests]
    assert [warm.scan(r) for r in requests] == expected  # each text's first sight, and repeats
    assert [warm.scan(r) for r in requests] == expected  # all from the memo
    assert sum(v.score >= 0.8 for v in expected) > len(texts) // 3  # the corpus does fire: a real comparison


def test_texts_never_combine_their_evidence_a_request_scores_as_its_best_text() -> None:
    """What the memo's unit rests on: one text's findings do not depend on the others of the request."""
    attacks = load("injection_attacks.txt")
    rng = random.Random(7)
    detector = never_remembers(InjectionDetector())
    raised = 0
    for _ in range(400):
        pair = rng.sample(attacks, 2)
        alone = max(detector.scan([t]).score for t in pair)
        together = detector.scan(pair).score
        assert together == alone, pair
        joined = detector.scan(["\n".join(pair)]).score  # the same words in one text do combine
        raised += joined > alone
    assert raised > 40


@pytest.mark.parametrize(
    "text",
    [
        "mail jane.doe@example.com or call +1 415 555 0134",
        "card 4111 1111 1111 1111, key sk-proj-" + "a1B2" * 12,
        "nothing personal here",
    ],
)
def test_pii_spans_are_the_same_from_the_memo_and_each_call_gets_its_own_list(text: str) -> None:
    scanner = PiiScanner(["email", "phone", "credit_card", "secret"])
    first = scanner.find(text)
    again = scanner.find(text)
    assert again == first and again is not first
    again.clear()
    assert scanner.find(text) == first


def test_texts_with_many_pii_values_are_not_remembered() -> None:
    scanner = PiiScanner(["email"])
    crowded = " ".join(f"user{i}@example.com" for i in range(MEMO_MAX_SPANS + 1))
    assert len(scanner.find(crowded)) == MEMO_MAX_SPANS + 1
    assert len(scanner._memo) == 0
    scanner.find("one@example.com")
    assert len(scanner._memo) == 1


def test_what_was_remembered_while_a_long_computation_ran_is_kept() -> None:
    """A large text is scanned in a worker thread while the event loop keeps using the same memo, and turns its
    generations meanwhile. Storing the large text's result must not turn them once more from the young generation
    seen when its lookup began: that would bring back a stale generation and drop what was remembered since."""
    memo: TextMemo[int] = TextMemo(3, keep=lambda _: True)
    compute = Counted()
    for text in ("a", "b", "c"):
        memo.get(text, compute)  # the young generation is full

    def long_scan(text: str) -> int:
        for other in ("d", "e", "f", "g"):  # the loop, meanwhile: {a, b, c} turns old, then {d, e, f} does
            memo.get(other, compute)
        return compute(text)

    memo.get("large", long_scan)
    for text in ("g", "large", "f", "e"):
        memo.get(text, compute)
    assert compute.calls == ["a", "b", "c", "d", "e", "f", "g", "large"]
    assert len(memo) <= 2 * memo.entries


def test_threads_sharing_the_memo_get_every_answer_right_and_keep_it_bounded() -> None:
    memo: TextMemo[int] = TextMemo(50, keep=lambda _: True)
    texts = [f"text {i}" for i in range(400)]
    wrong: list[str] = []
    sizes: list[int] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20_000):
            text = rng.choice(texts)
            if memo.get(text, len) != len(text):
                wrong.append(text)
            sizes.append(len(memo))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert max(sizes) <= 2 * (memo.entries + len(threads))  # (an insert racing a turn lands in either generation)
