"""The built-in `mock` provider: answers in process, in OpenAI's format, with realistic usage.

For trying the gateway without any provider account and for load tests. Deterministic: the same
request gets the same answer. Tool calls are made when `tool_choice` forces one (all tools on "required",
the first only with `parallel_tool_calls: false`).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import Any

import orjson

from adapters.base import JSON, LocalAdapter, LocalAnswer, UpstreamRequest
from adapters.openai import OpenAIAdapter

_DEFAULT_DIMENSIONS = 256
_MAX_VALUES = 262_144


def estimate_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb for English."""
    return max(1, (len(text) + 3) // 4) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _error(status: int, message: str, param: str | None = None) -> LocalAnswer:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return LocalAnswer(status, orjson.dumps(body))


class MockAdapter(OpenAIAdapter, LocalAdapter):
    gen_ai_system = "_OTHER"

    def answer(self, request: UpstreamRequest) -> LocalAnswer:
        if request.method == "GET":
            return self._models(request)
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return _error(400, "body is not JSON")
        if request.url.endswith("/embeddings"):
            return self._embeddings(body)
        return self._chat(body)

    @staticmethod
    def _models(request: UpstreamRequest) -> LocalAnswer:
        """`GET /models` (the ping): the mock serves any model name, so it lists only itself."""
        if not request.url.endswith("/models"):
            return _error(404, "the mock provider serves GET only on /models")
        model = {"id": "mock", "object": "model", "created": 0, "owned_by": "gateway"}
        return LocalAnswer(200, orjson.dumps({"object": "list", "data": [model]}))

    def _chat(self, body: JSON) -> LocalAnswer:
        messages = body.get("messages") or []
        prompt_text = " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))
        prompt_tokens = estimate_tokens(prompt_text) + 3 * len(messages)
        last = _text_of(messages[-1].get("content")) if messages else ""
        words = f"This is the mock provider answering: {last[:200]}".split()
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        created = int(time.time())
        completion_id = "chatcmpl-mock-" + hashlib.sha256(orjson.dumps(messages)).hexdigest()[:24]
        model = body.get("model", "mock")
        tool_calls = self._forced_tool_calls(body)
        if tool_calls:
            finish = "tool_calls"
            completion_tokens = sum(estimate_tokens(c["function"]["arguments"]) + 3 for c in tool_calls)
        else:
            completion_tokens = len(words)
        n = body.get("n")
        choices = n if type(n) is int and n > 1 else 1  # as OpenAI: n answers (deterministic: the same n times)
        completion_tokens *= choices
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if body.get("stream"):
            frames = self._frames(completion_id, created, model, words, tool_calls, finish, usage, body, choices)
            return LocalAnswer(200, frames=frames)
        message: JSON = {"role": "assistant", "content": None if tool_calls else " ".join(words), "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        response = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish} for i in range(choices)
            ],
            "usage": usage,
            "system_fingerprint": "fp_mock",
        }
        return LocalAnswer(200, orjson.dumps(response))

    @staticmethod
    def _forced_tool_calls(body: JSON) -> list[JSON]:
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        if not tools or choice in (None, "none", "auto"):
            return []
        if isinstance(choice, dict):
            name = choice.get("function", {}).get("name")
            chosen = [t for t in tools if t.get("function", {}).get("name") == name]
        else:  # "required": the mock calls every tool, to exercise parallel calls, unless they are turned off
            chosen = tools[:1] if body.get("parallel_tool_calls") is False else tools
        return [
            {
                "id": f"call_mock_{i}",
                "type": "function",
                "function": {"name": t["function"]["name"], "arguments": orjson.dumps({"mock": True}).decode()},
            }
            for i, t in enumerate(chosen)
        ]

    @staticmethod
    def _frames(
        completion_id: str,
        created: int,
        model: str,
        words: list[str],
        tool_calls: list[JSON],
        finish: str,
        usage: JSON,
        body: JSON,
        choices: int,
    ) -> list[bytes]:
        def chunk(choice: int, delta: JSON, finish_reason: str | None = None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": choice, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        frames = []
        for choice in range(choices):
            frames.append(chunk(choice, {"role": "assistant", "content": ""}))
            if tool_calls:
                for index, call in enumerate(tool_calls):
                    frames.append(chunk(choice, {"tool_calls": [{"index": index, **call}]}))
            else:
                frames.extend(chunk(choice, {"content": (" " if i else "") + w}) for i, w in enumerate(words))
            frames.append(chunk(choice, {}, finish))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage_chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            frames.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        return frames

    def _embeddings(self, body: JSON) -> LocalAnswer:
        raw_input = body.get("input")
        inputs: list[Any] = raw_input if isinstance(raw_input, list) else [raw_input]
        if inputs and all(isinstance(i, int) for i in inputs):
            inputs = [inputs]  # one tokenised input
        dimensions = body.get("dimensions") or _DEFAULT_DIMENSIONS
        if dimensions * len(inputs) > _MAX_VALUES:  # computed on the event loop: keep it small
            return _error(400, f"the mock provider returns at most {_MAX_VALUES} values per request", "dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else orjson.dumps(item).decode()
            tokens += len(item) if isinstance(item, list) else estimate_tokens(text)
            vector = _vector(text, dimensions)
            embedding: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        response = {
            "object": "list",
            "data": data,
            "model": body.get("model", "mock"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return LocalAnswer(200, orjson.dumps(response))


def _vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-length vector derived from the text."""
    seed = hashlib.sha256(text.encode()).digest()
    stream = b""
    counter = 0
    while len(stream) < dimensions:
        stream += hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        counter += 1
    values = [(b - 127.5) / 127.5 for b in stream[:dimensions]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]
