"""The one interface every provider adapter implements: pure translation, no I/O.

An adapter turns a validated OpenAI request into the provider's HTTP request, and the provider's
answer (a JSON body, or a stream of SSE events) back into OpenAI's shapes. It never opens a socket,
reads a clock for timeouts or touches gateway state, so every adapter is tested with plain fixtures
and one conformance suite runs over all of them.

    ChatRequest ──build_chat──► UpstreamRequest ──(gateway sends it)──► status, body
    status, body ──parse_chat──► ChatCompletion | ProviderError
    SSEEvent ──StreamTranslator.feed──► OpenAI chunk dicts (usage chunk always emitted at the end)
    Target ──build_ping──► UpstreamRequest ──(gateway sends it)──► status ──ping_auth──► ok | rejected | unknown
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom a deployment is called: everything an adapter needs from the config."""

    provider: str  # the provider's name in config.yaml, for messages only
    model: str  # the upstream model name (Azure: the deployment name)
    base_url: str  # without a trailing slash
    api_key: str | None = None
    api_version: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:  # never print the key
        return f"Target(provider={self.provider!r}, model={self.model!r}, base_url={self.base_url!r})"


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated OpenAI chat completion request.

    `body` is the client's JSON exactly as sent (validated, unknown fields kept so that
    OpenAI-style upstreams see new parameters unchanged). The other fields are derived once.
    """

    body: JSON
    stream: bool = False
    include_usage: bool = False  # the client asked for the final usage chunk
    default_max_tokens: int = 4096  # for providers that require max_tokens when the client gave none


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    body: JSON


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:  # headers carry credentials
        return f"UpstreamRequest({self.method} {self.url}, {len(self.body)} bytes)"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens read from a cache
    cache_write_tokens: int = 0  # prompt tokens written to a cache
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those cached for an hour (Anthropic's 1h TTL: 2x input)
    audio_prompt_tokens: int = 0  # of prompt_tokens, audio (OpenAI's audio models bill them above text)
    audio_completion_tokens: int = 0  # of completion_tokens, audio

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> JSON:
        """OpenAI's `usage` object (CompletionUsage)."""
        usage: JSON = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens or self.cache_write_tokens:
            details: JSON = {"cached_tokens": self.cached_tokens}
            if self.cache_write_tokens:
                details["cache_write_tokens"] = self.cache_write_tokens
            usage["prompt_tokens_details"] = details
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


def token_count(value: Any) -> int | None:
    """A token count as a provider reported it, when it is one: an int (not a bool) and not negative. A
    server that reports -5 must not credit a budget back."""
    return value if type(value) is int and value >= 0 else None


@dataclass(slots=True)
class ChatCompletion:
    """An OpenAI `CreateChatCompletionResponse` as a dict, with its usage already extracted."""

    body: JSON
    usage: Usage | None


@dataclass(slots=True)
class Embeddings:
    """An OpenAI `CreateEmbeddingResponse` as a dict, with its usage already extracted."""

    body: JSON
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class ProviderError:
    """What the provider said went wrong, already in OpenAI's vocabulary.

    `status` is the provider's HTTP status (0 when the error came inside a 200 stream).
    `message` is the provider's own message; it must never contain our credentials.
    """

    status: int
    message: str
    type: str = "api_error"
    code: str | None = None
    param: str | None = None
    details: JSON | None = None  # more fields of the error a client may act on (Azure's innererror)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


# OpenAI's error type for each HTTP status: the vocabulary the gateway answers in, whatever the provider
ERROR_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# status 0: no error status of the provider's (it answered 2xx); the failover takes it as a failing provider
UNEXPECTED_SHAPE = ProviderError(0, "it answered in an unexpected shape", "api_error")

PingAuth = Literal["ok", "rejected", "unknown"]


def ping_auth(status: int) -> PingAuth:
    """What a ping's HTTP status says about the credentials: any 2xx accepts them, 401/403 refuse them,
    anything else (404 for a wrong base_url, 429, 5xx, ...) says nothing either way."""
    if 200 <= status < 300:
        return "ok"
    if status in (401, 403):
        return "rejected"
    return "unknown"


class StreamTranslator(ABC):
    """Turns one upstream stream into OpenAI chunks.

    `feed` is called once per upstream SSE event and returns the chunks to send (possibly none).
    `finish` is called when the upstream stream ended and returns any chunks still owed. The last
    chunk a translator emits when it knows the usage is a usage chunk (`choices: []`, `usage: {...}`);
    the gateway drops it when the client did not ask for usage. `usage` holds what the provider
    reported; `error` is set when the provider sent an error event, after which nothing more is fed.
    """

    usage: Usage | None = None
    usage_final: bool = False  # the provider's last usage report came: a client leaving now owes what it says
    error: ProviderError | None = None
    done: bool = False  # the provider said the stream is complete

    @abstractmethod
    def feed(self, event: SSEEvent) -> list[JSON]: ...

    def finish(self) -> list[JSON]:
        return []


@dataclass(frozen=True, slots=True)
class Capabilities:
    chat: bool = True
    embeddings: bool = False


class Unsupported(Exception):
    """The provider cannot do what was asked (a parameter or an endpoint); becomes a 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class Adapter(ABC):
    """One provider API. Stateless: one instance serves every request."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    gen_ai_system: ClassVar[str] = "_OTHER"  # OpenTelemetry's gen_ai.system value for this API
    ping_probe: ClassVar[str] = "chat_max_tokens_1"  # what `build_ping` asks: "list_models" spends no tokens

    @abstractmethod
    def build_chat(self, req: ChatRequest, target: Target) -> UpstreamRequest: ...

    @abstractmethod
    def parse_chat(self, status: int, body: bytes) -> ChatCompletion | ProviderError: ...

    @abstractmethod
    def stream_translator(self, req: ChatRequest, target: Target) -> StreamTranslator: ...

    @abstractmethod
    def parse_error(self, status: int, body: bytes) -> ProviderError:
        """The error carried by a non-2xx response (used where no success body is possible)."""

    def decode_success(self, status: int, body: bytes, list_field: str) -> JSON | ProviderError:
        """A 2xx body as a JSON object holding a list of objects at `list_field`; anything else as the error it is."""
        if status >= 300:
            return self.parse_error(status, body)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ProviderError(0, f"it answered HTTP {status} with a body that is not JSON", "api_error")
        if not isinstance(parsed, dict):
            return UNEXPECTED_SHAPE
        items = parsed.get(list_field)
        if not isinstance(items, list):
            return UNEXPECTED_SHAPE
        for item in items:  # (a loop: cheaper than all() over a generator for the usual one item)
            if not isinstance(item, dict):
                return UNEXPECTED_SHAPE
        return parsed

    def build_ping(self, target: Target) -> UpstreamRequest:
        """The cheapest request that proves the provider is reachable and accepts `target`'s credentials.
        This default is a chat call answered with at most one token (`target.model` names the model);
        an API with a models list overrides it with that (zero tokens) and sets `ping_probe`."""
        body: JSON = {"model": target.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        return self.build_chat(ChatRequest(body, default_max_tokens=1), target)

    def build_embeddings(self, req: EmbeddingsRequest, target: Target) -> UpstreamRequest:
        raise Unsupported(f"provider '{target.provider}' does not serve embeddings", "model")

    def parse_embeddings(self, status: int, body: bytes) -> Embeddings | ProviderError:
        raise Unsupported("this provider does not serve embeddings", "model")


@dataclass(slots=True)
class LocalAnswer:
    """What a local (in-process) provider answers: the HTTP status and either a body or SSE frames."""

    status: int
    body: bytes = b""
    frames: list[bytes] = field(default_factory=list)


class LocalAdapter(Adapter):
    """An adapter whose 'upstream' answers in process (no network): the gateway calls `answer`
    instead of sending the UpstreamRequest, then parses the answer like any other."""

    @abstractmethod
    def answer(self, request: UpstreamRequest) -> LocalAnswer: ...
