"""Content policies applied to one request: which texts each policy sees, and what its action does.

    request ─► injection: scan user and tool texts ─► block (403) | flag (header + event) | off
            ─► pii: find values in every message ─► block (403) | redact (placeholders) | flag | off
    answer  ─► pii redact: placeholders put back (whole JSON, or per streamed field, across chunks)

Compiled once per tenant at config load (`TenantGuard`); a request gets a `RequestGuard` holding its
redaction state. Values found are never logged or recorded: only entity types and counts. A large request's
checks run in the policy thread (`check_off_loop`, gateway/policy_thread.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.config.schema import ALL_PII_ENTITIES, Policies
from gateway.errors import PolicyViolation
from gateway.policy_thread import PolicyThread
from gateway.request_texts import body_texts, content_texts, map_body_texts, map_content
from policies.injection import InjectionDetector
from policies.pii import PiiScanner, Redaction, StreamRestorer

JSON = dict[str, Any]
INJECTION_SCANNED_ROLES = frozenset({"user", "tool", "function"})
SCORE_HEADER = b"x-gateway-injection-score"
REDACTED_HEADER = b"x-gateway-pii-redacted"  # what redaction replaced before the provider saw it: types and counts


@dataclass(frozen=True, slots=True)
class TenantGuard:
    injection_action: str
    injection_threshold: float
    pii_action: str
    detector: InjectionDetector | None
    scanner: PiiScanner | None
    content_scanner: PiiScanner  # what logged content (`log_content`) is redacted with: every entity type

    def start(self) -> RequestGuard:
        return RequestGuard(self)


def build_guard(
    policies: Policies, detector: InjectionDetector, scanners: dict[tuple[str, ...], PiiScanner]
) -> TenantGuard:
    """`scanners` is shared across tenants so that equal entity lists compile once."""

    def compiled(entities: tuple[str, ...]) -> PiiScanner:
        scanner = scanners.get(entities)
        if scanner is None:
            scanner = scanners[entities] = PiiScanner(entities)
        return scanner

    scanner: PiiScanner | None = None
    if policies.pii.action != "off" and policies.pii.entities:
        scanner = compiled(tuple(sorted(set(policies.pii.entities))))
    return TenantGuard(
        injection_action=policies.injection.action,
        injection_threshold=policies.injection.threshold,
        pii_action=policies.pii.action if scanner is not None else "off",
        detector=detector if policies.injection.action != "off" else None,
        scanner=scanner,
        content_scanner=compiled(tuple(sorted(ALL_PII_ENTITIES))),
    )


# Where a text sits in a tool call (a function's arguments, a custom tool's input), and in an assistant message
# besides its content (a legacy function call's arguments).
CALL_TEXTS = (("function", "arguments"), ("custom", "input"))
MESSAGE_TEXTS = (("function_call", "arguments"),)
REASONING = "reasoning_content"  # what a model thought (DeepSeek, vLLM; Anthropic's thinking), kept in the history
CALL_FIELD, MESSAGE_FIELD = dict(CALL_TEXTS), dict(MESSAGE_TEXTS)
DELTA_TEXTS = ("content", REASONING, "refusal")  # a streamed delta's own texts
JSON_HOLDERS = frozenset(("function", "function_call"))  # whose text is JSON: a function call's arguments
JSON_FORMATS = frozenset(("json_object", "json_schema"))  # a response_format whose answer's content is JSON

Mapper = Callable[[str], str]


def _map_nested(item: JSON, places: tuple[tuple[str, str], ...], fn: Mapper, json_fn: Mapper) -> JSON:
    for holder, key in places:
        inner = item.get(holder)
        if isinstance(inner, dict) and isinstance(inner.get(key), str):
            mapped = (json_fn if holder in JSON_HOLDERS else fn)(inner[key])
            item = {**item, holder: {**inner, key: mapped}}
    return item


def _nested_texts(item: JSON, places: tuple[tuple[str, str], ...]) -> Iterator[str]:
    for holder, key in places:
        inner = item.get(holder)
        if isinstance(inner, dict) and isinstance(inner.get(key), str):
            yield inner[key]


def _map_tool_calls(calls: Any, fn: Mapper, json_fn: Mapper) -> Any:
    if not isinstance(calls, list):
        return calls
    return [_map_nested(call, CALL_TEXTS, fn, json_fn) if isinstance(call, dict) else call for call in calls]


def map_message_texts(
    message: JSON, fn: Mapper, json_fn: Mapper | None = None, content_fn: Mapper | None = None
) -> JSON:
    """`message` with its texts mapped: by `json_fn` where the text is JSON (function call arguments), by
    `content_fn` its content, by `fn` the others (each defaults to `fn`)."""
    json_fn = json_fn or fn
    content = map_content(message.get("content"), content_fn or fn)
    mapped = {**message, "content": content} if "content" in message else dict(message)
    if "tool_calls" in message:
        mapped["tool_calls"] = _map_tool_calls(message["tool_calls"], fn, json_fn)
    for name in ("refusal", REASONING):
        if isinstance(message.get(name), str):
            mapped[name] = fn(message[name])
    return _map_nested(mapped, MESSAGE_TEXTS, fn, json_fn)


@dataclass(slots=True)
class RequestGuard:
    policy: TenantGuard
    injection_score: float | None = None
    injection_signals: tuple[str, ...] = ()
    pii_counts: dict[str, int] = field(default_factory=dict)
    redaction: Redaction | None = None
    json_content: bool = False  # the answer's content is JSON (response_format): values are put back escaped

    @property
    def restoring(self) -> bool:
        return self.redaction is not None and bool(self.pii_counts)

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        headers = []
        if self.injection_score is not None and self.policy.injection_action == "flag":
            headers.append((SCORE_HEADER, f"{self.injection_score:.3f}".encode()))
        if self.restoring:  # the provider worked on placeholders (an embedding is the placeholder text's)
            counts = ",".join(f"{entity}={count}" for entity, count in sorted(self.pii_counts.items()))
            headers.append((REDACTED_HEADER, counts.encode()))
        return headers

    def adopt(self, other: RequestGuard) -> None:
        """What `other`, a guard of the same policy that ran this request's checks, found."""
        self.injection_score, self.injection_signals = other.injection_score, other.injection_signals
        self.pii_counts, self.redaction, self.json_content = other.pii_counts, other.redaction, other.json_content

    # request side ---------------------------------------------------------------------------------
    def check_injection(self, texts: list[str]) -> None:
        detector = self.policy.detector
        if detector is None or not texts:
            return
        verdict = detector.scan(texts)
        self.injection_score, self.injection_signals = verdict.score, verdict.signals
        if self.policy.injection_action == "block" and verdict.score >= self.policy.injection_threshold:
            raise PolicyViolation(
                "This request was blocked by the gateway's prompt-injection policy.", code="prompt_injection_detected"
            )

    def apply_pii(self, texts: list[str], rewrite: Callable[[Callable[[str], str]], JSON]) -> JSON | None:
        """Scans `texts`; on `redact` returns the body rewritten by `rewrite(redact_fn)`, else None."""
        scanner = self.policy.scanner
        if scanner is None:
            return None
        action = self.policy.pii_action
        if action == "redact":
            if not any(scanner.find(text) for text in texts):
                return None  # nothing to redact: spare the rewrite of every message
            redaction = Redaction(scanner)
            body = rewrite(redaction.redact)
            self.pii_counts = redaction.counts()
            self.redaction = redaction
            return body if self.pii_counts else None
        counts: dict[str, int] = {}
        for text in texts:
            for span in scanner.find(text):
                counts[span.entity] = counts.get(span.entity, 0) + 1
        self.pii_counts = counts
        if counts and action == "block":
            kinds = ", ".join(sorted(counts))
            raise PolicyViolation(
                f"This request was blocked by the gateway's PII policy: it contains {kinds}.", code="pii_detected"
            )
        return None

    def check_chat(self, payload: JSON) -> JSON:
        """Runs both policies over a chat request; returns the body to send upstream."""
        messages = payload["messages"]
        if self.policy.detector is not None:
            self.check_injection(
                [t for m in messages if m.get("role") in INJECTION_SCANNED_ROLES for t in _injection_texts(m)]
            )
        if self.policy.scanner is None:
            return payload
        texts = [t for m in messages for t in _message_texts(m)]
        texts.extend(body_texts(payload))
        response_format = payload.get("response_format")
        self.json_content = isinstance(response_format, dict) and response_format.get("type") in JSON_FORMATS

        def rewrite(fn: Callable[[str], str]) -> JSON:
            mapped = [map_message_texts(m, fn) for m in messages]  # first: the messages' values are numbered first
            return {**map_body_texts(payload, fn), "messages": mapped}

        return self.apply_pii(texts, rewrite) or payload

    def check_embeddings(self, payload: JSON) -> JSON:
        raw = payload["input"]
        texts = (
            [raw] if isinstance(raw, str) else [t for t in raw if isinstance(t, str)] if isinstance(raw, list) else []
        )
        self.check_injection(texts)
        if self.policy.scanner is None:
            return payload

        def rewrite(fn: Callable[[str], str]) -> JSON:
            new_input = fn(raw) if isinstance(raw, str) else [fn(t) if isinstance(t, str) else t for t in raw]
            return {**payload, "input": new_input}

        return self.apply_pii(texts, rewrite) or payload

    # answer side ----------------------------------------------------------------------------------
    def restore_completion(self, body: JSON) -> None:
        if not self.restoring:
            return
        assert self.redaction is not None
        restore = self.redaction.restore

        def restore_json(text: str) -> str:
            return restore(text, in_json=True)

        for choice in body.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                choice["message"] = map_message_texts(
                    message, restore, restore_json, restore_json if self.json_content else restore
                )

    def loggable(self, text: str) -> str:
        """`text` with every PII value replaced by a placeholder: what `log_content` may keep."""
        return Redaction(self.policy.content_scanner).redact(text)

    def stream_restore(self) -> ChunkRestorer | None:
        if not self.restoring:
            return None
        assert self.redaction is not None
        return ChunkRestorer(self.redaction, self.json_content)


async def check_off_loop(
    thread: PolicyThread, guard: RequestGuard, check: Callable[[RequestGuard, JSON], JSON], payload: JSON
) -> JSON:
    """`check(guard, payload)` (`RequestGuard.check_chat`, `.check_embeddings`) run in the policy thread, on a
    guard of its own: the loop never reads one the thread is writing (the record of a request whose client left
    mid-scan is written from `guard`, with no verdict, while the thread may still be at work; what it then
    finds is dropped). What it found is taken over once it is done, passed or blocked."""
    scratch = guard.policy.start()
    try:
        checked = await thread.run(check, scratch, payload)
    except Exception:  # a block: its verdicts reach the record and the headers, as on the loop
        guard.adopt(scratch)
        raise
    guard.adopt(scratch)
    return checked


def _injection_texts(message: JSON) -> list[str]:
    """A message's texts as the detector reads them: each part, and the parts together as the model may read them
    (one right after the other, or apart), so that an attack cut across parts is whole again: "Ignore all prev" +
    "ious instructions", "Ignore all" + "previous instructions". (Several text parts in one message are rare.)"""
    texts = list(content_texts(message.get("content")))
    if len(texts) > 1:
        texts += ["".join(texts), " ".join(texts)]
    return texts


def _message_texts(message: JSON) -> Iterator[str]:
    yield from content_texts(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                yield from _nested_texts(call, CALL_TEXTS)
    for name in ("refusal", REASONING):
        if isinstance(message.get(name), str):
            yield message[name]
    yield from _nested_texts(message, MESSAGE_TEXTS)


def _append(holder: JSON, key: str, text: str) -> None:
    """`text` after what `holder[key]` already says (nothing, when it holds no text)."""
    previous = holder.get(key)
    holder[key] = (previous if isinstance(previous, str) else "") + text


def _position(index: object) -> int:
    """A choice's or a tool call's index as the restorers key it (0 when the provider wrote no int)."""
    return index if type(index) is int else 0


class ChunkRestorer:
    """Puts PII values back into streamed chunks. Each streamed text field (content, reasoning, each
    tool call's arguments, per choice) has its own `StreamRestorer`, which holds back only what may be
    the start of a placeholder; held text is released into the chunk that finishes the choice."""

    def __init__(self, redaction: Redaction, json_content: bool = False) -> None:
        self._redaction = redaction
        self._json_places = JSON_HOLDERS | {"content"} if json_content else JSON_HOLDERS  # (the keys' names)
        self._restorers: dict[tuple[int, str, int], StreamRestorer] = {}

    def _feed(self, key: tuple[int, str, int], text: str) -> str:
        restorer = self._restorers.get(key)
        if restorer is None:
            restorer = self._restorers[key] = self._redaction.stream_restorer(in_json=key[1] in self._json_places)
        return restorer.feed(text)

    def _feed_nested(self, item: JSON, holder: str, field_name: str, key: tuple[int, str, int]) -> None:
        inner = item.get(holder)
        if isinstance(inner, dict) and isinstance(inner.get(field_name), str) and inner[field_name]:
            inner[field_name] = self._feed(key, inner[field_name])

    def apply(self, chunk: JSON) -> None:
        """Restores in place. A chunk not shaped as OpenAI's is the provider's to answer for: what is not where
        a text should be is passed on untouched, never a reason to fail the stream."""
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            index = _position(choice.get("index"))
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for name in DELTA_TEXTS:
                    if isinstance(delta.get(name), str) and delta[name]:
                        delta[name] = self._feed((index, name, 0), delta[name])
                for holder, field_name in MESSAGE_TEXTS:  # a legacy function call's arguments
                    self._feed_nested(delta, holder, field_name, (index, holder, 0))
                calls = delta.get("tool_calls")
                for call in calls if isinstance(calls, list) else ():
                    if isinstance(call, dict):
                        for holder, field_name in CALL_TEXTS:
                            self._feed_nested(call, holder, field_name, (index, holder, _position(call.get("index"))))
            if choice.get("finish_reason") is not None:
                self._release(index, choice)

    def _release(self, index: int, choice: JSON) -> None:
        for key in sorted(k for k in self._restorers if k[0] == index):
            text = self._restorers.pop(key).flush()
            if not text:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = choice["delta"] = {}
            _, name, tool_index = key
            if name in CALL_FIELD:
                calls = delta.get("tool_calls")
                if not isinstance(calls, list):
                    calls = delta["tool_calls"] = []
                calls.append({"index": tool_index, name: {CALL_FIELD[name]: text}})
            elif name in MESSAGE_FIELD:
                inner = delta.get(name)
                if not isinstance(inner, dict):
                    inner = delta[name] = {}
                _append(inner, MESSAGE_FIELD[name], text)
            else:
                _append(delta, name, text)
