"""OpenAI's Chat Completions and Embeddings API, and every server that speaks it (vLLM, Ollama,
Groq, Hyperbolic, ...). Requests pass through with only `model` replaced; streams are forced to
report usage, which the gateway hides again when the client did not ask for it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from adapters.base import (
    ERROR_TYPES_BY_STATUS,
    JSON,
    UNEXPECTED_SHAPE,
    Adapter,
    Capabilities,
    ChatCompletion,
    ChatRequest,
    Embeddings,
    EmbeddingsRequest,
    ProviderError,
    SSEEvent,
    StreamTranslator,
    Target,
    UpstreamRequest,
    Usage,
    token_count,
)


def usage_from_openai(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    completion = _int(raw.get("completion_tokens"))
    if raw.get("prompt_tokens") is not None:
        prompt = _int(raw["prompt_tokens"])
    else:  # some OpenAI-style servers (embeddings) report only total_tokens
        total = token_count(raw.get("total_tokens"))
        if total is None:
            return None  # no count at all: unreported, charged as the worst case (cost unknown), never as 0
        prompt = max(total - completion, 0)
    usage = Usage(prompt_tokens=prompt, completion_tokens=completion)
    prompt_details = raw.get("prompt_tokens_details")
    if isinstance(prompt_details, dict):
        usage.cached_tokens = _int(prompt_details.get("cached_tokens"))
        usage.cache_write_tokens = _int(prompt_details.get("cache_write_tokens"))
        usage.audio_prompt_tokens = _int(prompt_details.get("audio_tokens"))
    completion_details = raw.get("completion_tokens_details")
    if isinstance(completion_details, dict):
        usage.reasoning_tokens = _int(completion_details.get("reasoning_tokens"))
        usage.audio_completion_tokens = _int(completion_details.get("audio_tokens"))
    return usage


def _int(value: Any) -> int:
    return token_count(value) or 0


def openai_error(status: int, body: bytes) -> ProviderError:
    """Reads OpenAI's `{"error": {...}}` shape; anything else becomes a generic upstream error."""
    default_type = ERROR_TYPES_BY_STATUS.get(status, "api_error")
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        error_type = error.get("type")
        return ProviderError(
            status=status,
            message=message if isinstance(message, str) and message else f"upstream returned HTTP {status}",
            type=error_type if isinstance(error_type, str) else default_type,
            code=str(error["code"]) if error.get("code") is not None else None,
            param=error.get("param") if isinstance(error.get("param"), str) else None,
            details={"innererror": inner} if isinstance(inner := error.get("innererror"), dict) else None,
        )
    if isinstance(error, str) and error:  # some compatible servers answer {"error": "text"}
        return ProviderError(status=status, message=error, type=default_type)
    return ProviderError(status=status, message=f"upstream returned HTTP {status}", type=default_type)


def not_served_by_the_model(err: ProviderError) -> ProviderError:
    """`err`, or the 400 it stands for when OpenAI says the model does not do what was asked (Azure answers that
    400 OperationNotSupported): a chat model asked for embeddings (a 403), a model that does not chat asked to (a
    404 naming `model`). Read as the gateway's credentials or a model name the config got wrong, it would be
    retried and held against the circuit of a deployment that serves what it is meant for."""
    if (err.status == 403 and "not allowed to generate embeddings" in err.message) or (
        err.status == 404 and err.param == "model" and "v1/chat/completions" in err.message
    ):
        return replace(err, status=400, type="invalid_request_error", param="model")
    return err


CHUNK_OBJECT = "chat.completion.chunk"


class OpenAIStreamTranslator(StreamTranslator):
    __slots__ = ("_finished", "_last", "_seen", "_strip_usage_field")

    def __init__(self, req: ChatRequest) -> None:
        # We force include_usage upstream; OpenAI then adds `"usage": null` to every chunk, which a
        # client that did not ask for usage must not see.
        self._strip_usage_field = not req.include_usage
        self._last: JSON | None = None  # the last chunk that named itself (object, id, created, model)
        self._seen: set[int] = set()  # the indexes of the choices streamed so far
        self._finished: set[int] = set()  # those of them that came with their finish_reason

    def feed(self, event: SSEEvent) -> list[JSON]:
        data = event.data
        if data == "[DONE]":
            self.done = True
            return []
        if not data:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error = ProviderError(0, "upstream sent a malformed stream event", "api_error")
            return []
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk and "choices" not in chunk:
            self.error = openai_error(0, data.encode())
            return []
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            self.error = ProviderError(0, "upstream sent a malformed stream event", "api_error")
            return []
        if usage is not None:
            self.usage = usage_from_openai(usage)
            self.usage_final = not choices  # the usage chunk (some servers also report usage on every chunk)
        elif not choices:
            # Annotation-only frames (Azure's prompt_filter_results preamble, with empty id and object)
            # carry nothing a client can use and are not valid chat.completion.chunk objects.
            return []
        elif self._strip_usage_field and "usage" in chunk:
            del chunk["usage"]
        if chunk.get("object") == CHUNK_OBJECT:
            self._last = chunk
        else:  # Azure's asynchronous content-filter notes: id, object and model "", created 0
            self._name(chunk)
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                if "delta" not in choice:  # (those notes, too)
                    choice["delta"] = {}
                index = choice.get("index")
                if type(index) is int:
                    self._seen.add(index)
                    if choice.get("finish_reason") is not None:
                        self._finished.add(index)
        return [chunk]

    def finish(self) -> list[JSON]:
        """The body ended without [DONE], which some OpenAI-compatible servers never send (older TGI releases,
        ik_llama.cpp): the answer is still complete when every choice it streamed came with its finish_reason
        (and a usage chunk, when there is one, comes after those)."""
        if self.error is None and self._seen and self._seen <= self._finished:
            self.done = True
        return []

    def _name(self, chunk: JSON) -> None:
        """A chunk of this stream as OpenAI names every one: its object, and the stream's id, created, model."""
        chunk["object"] = CHUNK_OBJECT
        last = self._last
        if last is not None:
            for key in ("id", "created", "model"):
                if key in last:
                    chunk[key] = last[key]


class OpenAIAdapter(Adapter):
    gen_ai_system = "openai"
    capabilities = Capabilities(chat=True, embeddings=True)
    ping_probe = "list_models"

    def chat_url(self, target: Target) -> str:
        return target.base_url + "/chat/completions"

    def asks_stream_usage(self, target: Target) -> bool:
        """Whether streamed requests can carry `stream_options.include_usage`."""
        return True

    def output_limit_field(self, target: Target) -> str:
        """The parameter that bounds the answer's length (`max_tokens` is deprecated at OpenAI)."""
        return "max_completion_tokens"

    def embeddings_url(self, target: Target) -> str:
        return target.base_url + "/embeddings"

    def models_url(self, target: Target) -> str:
        return target.base_url + "/models"

    def auth_headers(self, target: Target) -> dict[str, str]:
        return {"authorization": "Bearer " + target.api_key} if target.api_key else {}

    def headers(self, target: Target, body: bool = True) -> dict[str, str]:
        """The credentials and the config's extra headers (which win), with a JSON content type when a
        body is sent."""
        headers = {"content-type": "application/json"} if body else {}
        headers.update(self.auth_headers(target))
        headers.update(target.headers)
        return headers

    def build_chat(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        body = dict(req.body)
        body["model"] = target.model
        limit_field = self.output_limit_field(target)
        if limit_field == "max_tokens":
            # an API that knows only max_tokens refuses max_completion_tokens (a 400), even as the client's own
            asked = body.pop("max_completion_tokens", None)
            if asked is not None:
                given = body.get("max_tokens")
                body["max_tokens"] = asked if given is None else min(asked, given)
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            # the gateway reserved budget for at most this many output tokens: hold the provider to it (a null
            # limit, which the SDK sends for an explicit None, means none given, not "no limit")
            body.pop("max_tokens", None)
            body.pop("max_completion_tokens", None)
            body[limit_field] = req.default_max_tokens
        if not self.asks_stream_usage(target):
            body.pop("stream_options", None)  # the API refuses it (a 400), even as the client's own
        elif req.stream:
            options = body.get("stream_options")
            body["stream_options"] = (
                {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
            )
        return UpstreamRequest("POST", self.chat_url(target), self.headers(target), orjson.dumps(body))

    def parse_chat(self, status: int, body: bytes) -> ChatCompletion | ProviderError:
        parsed = self.decode_success(status, body, "choices")
        if isinstance(parsed, ProviderError):
            return parsed
        for choice in parsed["choices"]:
            if not isinstance(choice.get("message"), dict):
                return UNEXPECTED_SHAPE
        return ChatCompletion(parsed, usage_from_openai(parsed.get("usage")))

    def stream_translator(self, req: ChatRequest, target: Target) -> StreamTranslator:
        return OpenAIStreamTranslator(req)

    def parse_error(self, status: int, body: bytes) -> ProviderError:
        return not_served_by_the_model(openai_error(status, body))

    def build_ping(self, target: Target) -> UpstreamRequest:
        """`GET /models`: served by OpenAI and by the compatible servers, with the same auth as a chat
        call, and free (no tokens)."""
        return UpstreamRequest("GET", self.models_url(target), self.headers(target, body=False), b"")

    def build_embeddings(self, req: EmbeddingsRequest, target: Target) -> UpstreamRequest:
        body = dict(req.body)
        body["model"] = target.model
        return UpstreamRequest("POST", self.embeddings_url(target), self.headers(target), orjson.dumps(body))

    def parse_embeddings(self, status: int, body: bytes) -> Embeddings | ProviderError:
        parsed = self.decode_success(status, body, "data")
        if isinstance(parsed, ProviderError):
            return parsed
        return Embeddings(parsed, usage_from_openai(parsed.get("usage")))
