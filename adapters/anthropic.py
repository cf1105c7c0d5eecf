"""Anthropic's Messages API (`POST /v1/messages`) behind OpenAI's chat completions.

Requests are rebuilt rather than passed through: system prompts move to the top-level `system`,
roles are repaired to strictly alternate, tool calls and results become `tool_use`/`tool_result`
blocks, `response_format: json_schema` becomes a forced tool, and `reasoning_effort` becomes a
thinking budget. Responses and stream events are rebuilt as OpenAI completions and chunks;
thinking text comes back as `reasoning_content` (the DeepSeek / vLLM / LiteLLM convention).

The API version is pinned to 2023-06-01, which still accepts `temperature` and `top_p`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.base import (
    JSON,
    UNEXPECTED_SHAPE,
    Adapter,
    ChatCompletion,
    ChatRequest,
    ProviderError,
    SSEEvent,
    StreamTranslator,
    Target,
    Unsupported,
    UpstreamRequest,
    Usage,
    token_count,
)

ANTHROPIC_VERSION = "2023-06-01"

# The most thinking each level asks for. As OpenAI counts reasoning tokens within max_completion_tokens,
# thinking gets at most THINKING_SHARE of the request's max_tokens, which is never raised (the budgets
# reserved it, the tenant's cap bounds it); Anthropic's minimum budget is 1024 (see `_apply_reasoning`).
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32000,
}
MIN_THINKING_BUDGET = 1024
THINKING_SHARE = 0.75  # of max_tokens; the rest is left for the answer
MIN_TOP_P_WITH_THINKING = 0.95
MAX_TEMPERATURE = 1.0  # OpenAI's go to 2.0

# parse_chat gets no request, so the tool that carries a json_schema answer must be recognisable
# by its name alone. Anthropic tool names are limited to 64 characters.
RESPONSE_TOOL_PREFIX = "response_format__"
_TOOL_NAME_MAX = 64

# Anthropic requires the first message to come from the user. A neutral placeholder reads as
# "go on" to the model without inventing an instruction the client never gave.
CONTINUATION_PLACEHOLDER = "(continued)"

JSON_OBJECT_INSTRUCTION = "Respond only with a single valid JSON object, without any text before or after it."

# Anthropic tool_use ids must match ^[a-zA-Z0-9_-]+$; ids minted by other providers may not.
_INVALID_TOOL_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")

_DEFAULT_INPUT_SCHEMA: JSON = {"type": "object", "properties": {}}
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type -> (OpenAI error type, OpenAI error code).
_ERROR_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "authentication_error": ("authentication_error", None),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("permission_error", None),
    "not_found_error": ("not_found_error", None),
    "conflict_error": ("conflict_error", None),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "timeout_error": ("api_error", "timeout"),
    "api_error": ("api_error", None),
    # 529: the status is kept so the gateway can retry or fall back; OpenAI has no own type for it.
    "overloaded_error": ("api_error", "overloaded"),
}

# Anthropic refuses an account out of credit, or past a spend limit set on its organization or workspace, with a
# 400 invalid_request_error told apart by its message only; the usage tier's monthly spend cap is a 429 whose
# details say so (no wait lifts it before the month ends). Each concerns the gateway's account, not the request.
_OUT_OF_CREDIT_MESSAGE = re.compile(
    r"credit balance is too low|reached your specified (?:workspace )?API usage limits", re.IGNORECASE
)
_SPEND_CAP_CODE = "enforced_spend_limit_reached"
# A prompt past the model's context window (with max_tokens, or alone): OpenAI's context_length_exceeded, which
# clients act on (trimming the history and asking again).
_CONTEXT_TOO_LONG_MESSAGE = re.compile(r"prompt is too long|exceed context limit", re.IGNORECASE)

_ERROR_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


# ─── request ──────────────────────────────────────────────────────────────────────────────────


def build_payload(req: ChatRequest, model: str) -> JSON:
    """The Anthropic request body for a validated OpenAI chat completion request."""
    body = req.body
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise Unsupported("Anthropic returns a single choice; n > 1 is not supported", "n")

    _refuse_what_anthropic_cannot_answer(body)
    system, messages = _convert_messages(body.get("messages"))
    payload: JSON = {"model": model, "messages": messages}

    requested = body.get("max_completion_tokens")
    if requested is None:
        requested = body.get("max_tokens")
    max_tokens = requested if isinstance(requested, int) else req.default_max_tokens

    tools = _convert_tools(body.get("tools"))
    tool_choice = _convert_tool_choice(body.get("tool_choice"))
    tool_choice = _apply_response_format(body.get("response_format"), tools, tool_choice, system)
    if tools:
        payload["tools"] = tools
        if body.get("parallel_tool_calls") is False:
            tool_choice = tool_choice or {"type": "auto"}
            if tool_choice["type"] != "none":
                tool_choice["disable_parallel_tool_use"] = True
        if tool_choice is not None:
            payload["tool_choice"] = tool_choice

    if system:
        if any("cache_control" in block for block in system):
            payload["system"] = system
        else:
            payload["system"] = "\n\n".join(block["text"] for block in system)

    # Anthropic samples at a temperature up to 1.0 where OpenAI goes to 2.0: passed through unchanged (clamping or
    # rescaling would silently change what the client asked for), and one above 1 refused below, once thinking
    # (which drops it) is settled, so that another deployment answers rather than Anthropic's 400 ending the request.
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            payload[name] = body[name]

    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list):
        sequences = [item for item in stop if isinstance(item, str) and item]
        if any(not item.strip() for item in sequences):  # Anthropic refuses them; dropped, text would run past them
            raise Unsupported(
                "Anthropic does not accept stop sequences made only of whitespace (such as '\\n')", "stop"
            )
        if sequences:
            payload["stop_sequences"] = sequences

    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        payload["metadata"] = {"user_id": user}

    payload["max_tokens"] = max_tokens
    _apply_reasoning(body.get("reasoning_effort"), payload, max_tokens)
    if payload.get("temperature", 0) > MAX_TEMPERATURE:
        raise Unsupported(f"Anthropic accepts a temperature from 0 to {MAX_TEMPERATURE:g}", "temperature")

    if req.stream:
        payload["stream"] = True
    return payload


def _refuse_what_anthropic_cannot_answer(body: JSON) -> None:
    """Parameters that change what the answer is (logprobs the client will read, audio, a web search, banned
    tokens, legacy function calling) are refused, never dropped: the request then goes to a deployment that can
    answer it, or gets a 400 naming the parameter. Sampling preferences without an Anthropic equivalent
    (presence and frequency penalties, seed) are not sent."""
    if body.get("logprobs") is True or body.get("top_logprobs"):
        raise Unsupported("Anthropic does not return log probabilities", "logprobs")
    modalities = body.get("modalities")
    if (isinstance(modalities, list) and any(kind != "text" for kind in modalities)) or body.get("audio") is not None:
        raise Unsupported("Anthropic answers in text only", "modalities" if modalities else "audio")
    if body.get("web_search_options") is not None:
        raise Unsupported("web search is not supported with Anthropic through this gateway", "web_search_options")
    if body.get("logit_bias"):
        raise Unsupported("Anthropic does not accept logit_bias", "logit_bias")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise Unsupported(
                f"'{legacy}' (legacy function calling) is not supported with Anthropic; use tools", legacy
            )


def _convert_messages(raw: Any) -> tuple[list[JSON], list[JSON]]:
    """OpenAI messages -> (system text blocks, strictly alternating Anthropic messages)."""
    if not isinstance(raw, list):
        raise Unsupported("messages must be a list", "messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Unsupported("each message must be an object", param)
        role = message.get("role")
        if role in ("system", "developer"):
            blocks = _text_blocks(message.get("content"), param)
            _apply_message_cache_control(message, blocks)
            system.extend(_nonblank(blocks))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), param)
            turn_role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
            turn_role = "assistant"
        elif role == "tool":
            blocks = [_tool_result_block(message, param)]
            turn_role = "user"  # consecutive results merge into one user turn, as parallel calls require
        else:
            raise Unsupported(f"messages with role {role!r} are not supported by Anthropic", f"{param}.role")
        _apply_message_cache_control(message, blocks)
        blocks = _nonblank(blocks)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})

    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": CONTINUATION_PLACEHOLDER}]})
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        # A final (prefilled) assistant turn must not end in whitespace.
        last["content"][-1]["text"] = last["content"][-1]["text"].rstrip()
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0].keys() == {"type", "text"}:
            turn["content"] = content[0]["text"]
    return system, turns


def _nonblank(blocks: list[JSON]) -> list[JSON]:
    """Anthropic rejects text blocks that are empty or only whitespace."""
    return [block for block in blocks if block["type"] != "text" or block["text"].strip()]


def _apply_message_cache_control(message: JSON, blocks: list[JSON]) -> None:
    # Some clients put cache_control on the message itself; Anthropic wants it on a block.
    cache_control = message.get("cache_control")
    if isinstance(cache_control, dict) and blocks:
        blocks[-1]["cache_control"] = cache_control


def _text_block(text: Any, part: JSON | None = None) -> JSON:
    block: JSON = {"type": "text", "text": text if isinstance(text, str) else ""}
    return block if part is None else _with_cache_control(block, part)


def _text_blocks(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)]
    if not isinstance(content, list):
        raise Unsupported("content must be a string or a list of parts", f"{param}.content")
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise Unsupported(f"content parts of type {kind!r} are not supported here", f"{param}.content[{j}]")
        blocks.append(_text_block(part.get("text", part.get("refusal")), part))
    return blocks


def _user_blocks(content: Any, param: str) -> list[JSON]:
    if not isinstance(content, list):
        return _text_blocks(content, param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        part_param = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, dict) and kind == "text":
            blocks.append(_text_block(part.get("text"), part))
        elif isinstance(part, dict) and kind == "image_url":
            blocks.append(_image_block(part, part_param))
        elif isinstance(part, dict) and kind == "file":
            blocks.append(_document_block(part, part_param))
        else:
            raise Unsupported(f"content parts of type {kind!r} are not supported by Anthropic", part_param)
    return blocks


def _image_block(part: JSON, param: str) -> JSON:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise Unsupported("image_url.url must be a string", param)
    source: JSON
    if url.startswith("data:"):
        inline = _base64_data_url(url)
        if inline is None:
            raise Unsupported("image data URLs must be base64-encoded", param)
        media_type, data = inline
        media_type = "image/jpeg" if media_type == "image/jpg" else media_type  # OpenAI accepts both spellings
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise Unsupported(f"image type {media_type!r} is not supported (use jpeg, png, gif or webp)", param)
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise Unsupported("image URLs must be https URLs or base64 data URLs", param)
    return _with_cache_control({"type": "image", "source": source}, part)


def _document_block(part: JSON, param: str) -> JSON:
    """A PDF sent inline (`file.file_data` as a data URL) is an Anthropic document; a `file_id` refers to
    OpenAI's file store, which Anthropic cannot read."""
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise Unsupported("only files sent inline as file_data are supported by Anthropic", param)
    inline = _base64_data_url(data_url)
    if inline is None:
        raise Unsupported("file_data must be a base64 data URL", param)
    media_type, data = inline
    if media_type != "application/pdf":
        raise Unsupported(f"file type {media_type!r} is not supported by Anthropic (only application/pdf)", param)
    return _with_cache_control(
        {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}, part
    )


def _base64_data_url(url: str) -> tuple[str, str] | None:
    """(the media type, lower-cased, and the data) of a base64 `data:` URL; None for any other string."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    media_type, *options = header.split(";")
    if not comma or "base64" not in options:
        return None
    return media_type.strip().lower(), data


def _with_cache_control(block: JSON, part: JSON) -> JSON:
    """The block (or tool), with the cache breakpoint its OpenAI part carried (Anthropic's field, passed through)."""
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: JSON, param: str) -> list[JSON]:
    blocks = _text_blocks(message.get("content"), param)
    if not _nonblank(blocks) and isinstance(message.get("refusal"), str):  # what the model said, kept in the history
        blocks = [_text_block(message["refusal"])]
    if message.get("function_call") is not None:
        raise Unsupported(
            "legacy function calls are not supported with Anthropic; use tool_calls", f"{param}.function_call"
        )
    tool_calls = message.get("tool_calls")
    if not isinstance(tool_calls, list):
        return blocks
    for k, call in enumerate(tool_calls):
        call_param = f"{param}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or call.get("type", "function") != "function" or not isinstance(function, dict):
            raise Unsupported("only function tool calls are supported by Anthropic", call_param)
        arguments = function.get("arguments")
        try:
            tool_input = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
        except orjson.JSONDecodeError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise Unsupported("tool call arguments must be a JSON object", f"{call_param}.function.arguments")
        blocks.append(
            {"type": "tool_use", "id": _tool_id(call.get("id")), "name": function.get("name"), "input": tool_input}
        )
    return blocks


def _tool_id(raw: Any) -> Any:
    """The same id maps the same way in tool_use and tool_result, so the pairs still match."""
    return _INVALID_TOOL_ID_CHARS.sub("_", raw) if isinstance(raw, str) else raw


def _tool_result_block(message: JSON, param: str) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": _tool_id(message.get("tool_call_id"))}
    content = message.get("content")
    if isinstance(content, list):
        parts = _nonblank(_text_blocks(content, param))
        if parts:
            block["content"] = parts
    elif isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        raise Unsupported("content must be a string or a list of text parts", f"{param}.content")
    return block


def _convert_tools(raw: Any) -> list[JSON]:
    if not isinstance(raw, list):
        return []
    tools: list[JSON] = []
    for k, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise Unsupported("only function tools are supported by Anthropic", f"tools[{k}]")
        parameters = function.get("parameters")
        converted: JSON = {
            "name": function.get("name"),
            "input_schema": parameters if isinstance(parameters, dict) and parameters else dict(_DEFAULT_INPUT_SCHEMA),
        }
        if isinstance(function.get("description"), str):
            converted["description"] = function["description"]
        tools.append(_with_cache_control(converted, tool))
    return tools


def _convert_tool_choice(raw: Any) -> JSON | None:
    if raw is None:
        return None
    if raw == "auto":
        return {"type": "auto"}
    if raw == "required":
        return {"type": "any"}
    if raw == "none":
        return {"type": "none"}
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    raise Unsupported("tool_choice must be 'auto', 'required', 'none' or a named function", "tool_choice")


def _apply_response_format(raw: Any, tools: list[JSON], tool_choice: JSON | None, system: list[JSON]) -> JSON | None:
    """Adds what response_format needs (a forced tool or an instruction); returns the tool_choice."""
    if raw is None:
        return tool_choice
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return tool_choice
    if kind == "json_object":
        system.append(_text_block(JSON_OBJECT_INSTRUCTION))
        return tool_choice
    if kind != "json_schema" or not isinstance(raw, dict):
        raise Unsupported(f"response_format of type {kind!r} is not supported by Anthropic", "response_format")
    spec = raw.get("json_schema")
    spec = spec if isinstance(spec, dict) else {}
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        name = "response"
    schema = spec.get("schema")
    description = spec.get("description")
    tool: JSON = {
        "name": (RESPONSE_TOOL_PREFIX + name)[:_TOOL_NAME_MAX],
        "description": description
        if isinstance(description, str) and description
        else "Give your final answer by calling this tool; its input is the answer.",
        "input_schema": schema if isinstance(schema, dict) and schema else dict(_DEFAULT_INPUT_SCHEMA),
    }
    client_tools_callable = bool(tools) and (tool_choice is None or tool_choice["type"] != "none")
    tools.append(tool)
    if not client_tools_callable:
        return {"type": "tool", "name": tool["name"]}
    if tool_choice is not None and tool_choice["type"] == "tool":
        return tool_choice  # the client forced one of its own functions
    # The model may still call the client's tools; whatever it answers must be a tool call.
    return {"type": "any"}


def _apply_reasoning(effort: Any, payload: JSON, max_tokens: int) -> None:
    """Enables thinking for `reasoning_effort` where Anthropic allows it, within `max_tokens`."""
    if effort is None or effort == "none":
        return
    wanted = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if wanted is None:
        raise Unsupported(f"reasoning_effort {effort!r} is not supported", "reasoning_effort")
    # Thinking is skipped rather than failing the request where Anthropic would reject it or the answer's
    # limit leaves it no room: forced tool use (tool_choice any/tool, which json_schema relies on) and a
    # prefilled answer (the last turn the assistant's) are incompatible with thinking, and continuing a
    # tool-use turn requires the signed thinking blocks of the previous assistant message, which the
    # OpenAI format cannot carry back.
    budget = min(wanted, int(max_tokens * THINKING_SHARE))
    if budget < MIN_THINKING_BUDGET:
        return
    tool_choice = payload.get("tool_choice")
    if isinstance(tool_choice, dict) and tool_choice["type"] in ("any", "tool"):
        return
    messages = payload["messages"]
    if messages and messages[-1]["role"] == "assistant":
        return
    assistants = [turn["content"] for turn in messages if turn["role"] == "assistant"]
    if assistants and isinstance(assistants[-1], list) and any(b["type"] == "tool_use" for b in assistants[-1]):
        return
    payload["thinking"] = {"type": "enabled", "budget_tokens": budget}
    payload.pop("temperature", None)  # not accepted together with thinking, nor top_k, nor top_p below 0.95
    payload.pop("top_k", None)
    if payload.get("top_p", 1.0) < MIN_TOP_P_WITH_THINKING:
        del payload["top_p"]


# ─── response ─────────────────────────────────────────────────────────────────────────────────


def _is_response_tool(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(RESPONSE_TOOL_PREFIX)


@dataclass(slots=True)
class _TokenCounts:
    """Anthropic's usage fields; `input` excludes the cached prompt tokens counted separately."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0  # of cache_write, those cached for an hour (cache_creation's breakdown by TTL)
    output: int = 0
    thinking: int = 0

    def update(self, raw: Any) -> None:
        """Takes the fields present in `raw` (message_delta usage is cumulative, fields optional)."""
        if not isinstance(raw, dict):
            return
        for attr, key in (
            ("input", "input_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
            ("output", "output_tokens"),
        ):
            count = token_count(raw.get(key))
            if count is not None:
                setattr(self, attr, count)
        by_ttl = raw.get("cache_creation")
        hour = token_count(by_ttl.get("ephemeral_1h_input_tokens")) if isinstance(by_ttl, dict) else None
        if hour is not None:
            self.cache_write_1h = hour
        details = raw.get("output_tokens_details")
        thinking = token_count(details.get("thinking_tokens")) if isinstance(details, dict) else None
        if thinking is not None:
            self.thinking = thinking

    def to_usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.input + self.cache_read + self.cache_write,
            completion_tokens=self.output,
            cached_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            reasoning_tokens=self.thinking,
            cache_write_1h_tokens=min(self.cache_write_1h, self.cache_write),
        )


def _finish_reason(stop_reason: Any, called_tools: bool) -> str:
    if stop_reason == "tool_use" and not called_tools:
        return "stop"  # the only tool used was the json_schema answer
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def completion_from_message(message: JSON) -> ChatCompletion:
    text: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[JSON] = []
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if _is_response_tool(block.get("name")):
                text.append(arguments)
            else:
                tool_calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": arguments},
                    }
                )
    reply: JSON = {
        "role": "assistant",
        "content": "".join(text) if text or not tool_calls else None,
        "refusal": None,
    }
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        reply["tool_calls"] = tool_calls
    body: JSON = {
        "id": message.get("id") if isinstance(message.get("id"), str) else "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") if isinstance(message.get("model"), str) else "",
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": _finish_reason(message.get("stop_reason"), bool(tool_calls)),
            }
        ],
    }
    usage = None
    if isinstance(message.get("usage"), dict):
        counts = _TokenCounts()
        counts.update(message["usage"])
        usage = counts.to_usage()
        body["usage"] = usage.to_openai()
    return ChatCompletion(body, usage)


def error_from_payload(status: int, payload: Any) -> ProviderError:
    """Reads Anthropic's `{"type": "error", "error": {"type", "message"}}`; anything else is generic."""
    default_type = _ERROR_TYPES_BY_STATUS.get(status, "api_error")
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return ProviderError(status, f"upstream returned HTTP {status}", default_type)
    anthropic_type = error.get("type")
    mapped = _ERROR_TYPES.get(anthropic_type) if isinstance(anthropic_type, str) else None
    error_type, code = mapped or (default_type, None)
    message = error.get("message")
    message = message if isinstance(message, str) and message else f"upstream returned HTTP {status}"
    param = None
    if _out_of_credit(status, anthropic_type, message, error.get("details")):
        error_type, code = _ERROR_TYPES["billing_error"]
    elif anthropic_type == "invalid_request_error" and _CONTEXT_TOO_LONG_MESSAGE.search(message):
        code, param = "context_length_exceeded", "messages"
    return ProviderError(status=status, message=message, type=error_type, code=code, param=param)


def _out_of_credit(status: int, anthropic_type: Any, message: str, details: Any) -> bool:
    if anthropic_type == "invalid_request_error" and status == 400:
        return _OUT_OF_CREDIT_MESSAGE.search(message) is not None
    if anthropic_type == "rate_limit_error":
        return isinstance(details, dict) and details.get("error_code") == _SPEND_CAP_CODE
    return False


def anthropic_error(status: int, body: bytes) -> ProviderError:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    return error_from_payload(status, payload)


# ─── stream ───────────────────────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class _ToolBlock:
    tool_index: int  # position among the OpenAI tool calls; -1 for the json_schema answer tool
    has_input: bool = False

    @property
    def is_answer(self) -> bool:
        return self.tool_index < 0


class AnthropicStreamTranslator(StreamTranslator):
    """Anthropic's message_start / content_block_* / message_delta / message_stop events as chunks."""

    __slots__ = (
        "_counts",
        "_created",
        "_finish_sent",
        "_id",
        "_model",
        "_started",
        "_tool_count",
        "_tools",
        "_usage_field",
    )

    def __init__(self, model: str, include_usage: bool = False) -> None:
        # OpenAI: with include_usage, "all other chunks will also include a usage field, but with a null value"
        self._usage_field = include_usage
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._started = False
        self._tools: dict[int, _ToolBlock] = {}  # by Anthropic content block index
        self._tool_count = 0
        self._finish_sent = False
        self._counts = _TokenCounts()

    def feed(self, event: SSEEvent) -> list[JSON]:
        if not event.data:
            return []
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self.error = ProviderError(0, "upstream sent a malformed stream event", "api_error")
            return []
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type") or event.event
        if kind == "error":
            self.error = error_from_payload(0, payload)
            return []
        if kind == "message_start":
            return self._message_start(payload.get("message"))
        if kind == "content_block_start":
            chunks = self._block_start(payload.get("index"), payload.get("content_block"))
        elif kind == "content_block_delta":
            chunks = self._block_delta(payload.get("index"), payload.get("delta"))
        elif kind == "content_block_stop":
            chunks = self._block_stop(payload.get("index"))
        elif kind == "message_delta":
            chunks = self._message_delta(payload)
        elif kind == "message_stop":
            chunks = self._message_stop()
        else:  # ping, and event types added later
            return []
        if chunks and not self._started:  # the answer's first chunk: the role chunk goes first
            choices = chunks[0].get("choices") or [{}]  # (a usage chunk has none)
            chunks.insert(0, self._role_chunk(calls_first="tool_calls" in choices[0].get("delta", {})))
        return chunks

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        } | ({"usage": None} if self._usage_field else {})

    def _role_chunk(self, calls_first: bool) -> JSON:
        """As OpenAI's first delta: content "" opens a text answer, null one that starts with a tool call (which
        the SDK's accumulation keeps: a message of tool calls only has content null, as in the JSON answer)."""
        self._started = True
        return self._chunk({"role": "assistant", "content": None if calls_first else ""})

    def _message_start(self, message: Any) -> list[JSON]:
        if isinstance(message, dict):
            if isinstance(message.get("id"), str):
                self._id = message["id"]
            if isinstance(message.get("model"), str):
                self._model = message["model"]
            self._counts.update(message.get("usage"))
            self.usage = self._counts.to_usage()  # so far: a stream cut short (an error, a client gone) still counts
        # The role chunk waits for the answer's first chunk (`feed` puts it first): message_start says nothing the
        # model wrote, and an error right after it (overloaded_error) is then a failed attempt, tried elsewhere.
        return []

    def _block_start(self, index: Any, block: Any) -> list[JSON]:
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "text":
            return self._text(block.get("text"))
        if kind == "thinking":
            return self._reasoning(block.get("thinking"))
        if kind != "tool_use" or not isinstance(index, int):
            return []
        if _is_response_tool(block.get("name")):
            self._tools[index] = _ToolBlock(-1)
            return []
        tool_index = self._tool_count
        self._tool_count += 1
        self._tools[index] = _ToolBlock(tool_index)
        call = {
            "index": tool_index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: Any) -> list[JSON]:
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(delta.get("text"))
        if kind == "thinking_delta":
            return self._reasoning(delta.get("thinking"))
        if kind == "input_json_delta" and isinstance(index, int):
            return self._arguments(self._tools.get(index), delta.get("partial_json"))
        return []  # signature_delta, citations_delta

    def _block_stop(self, index: Any) -> list[JSON]:
        tool = self._tools.pop(index, None) if isinstance(index, int) else None
        if tool is not None and not tool.has_input:
            return self._arguments(tool, "{}")  # a call without arguments still carries an object
        return []

    def _message_delta(self, payload: JSON) -> list[JSON]:
        self._counts.update(payload.get("usage"))
        self.usage = self._counts.to_usage()
        self.usage_final = True  # (the message's one message_delta comes last, its counts are the final ones)
        delta = payload.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None or self._finish_sent:
            return []
        self._finish_sent = True
        return [self._chunk({}, _finish_reason(stop_reason, self._tool_count > 0))]

    def _message_stop(self) -> list[JSON]:
        chunks = [] if self._finish_sent else [self._chunk({}, "stop")]
        self._finish_sent = True
        self.usage = self._counts.to_usage()
        self.done = True
        chunks.append(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": self.usage.to_openai(),
            }
        )
        return chunks

    def _text(self, text: Any) -> list[JSON]:
        return [self._chunk({"content": text})] if isinstance(text, str) and text else []

    def _reasoning(self, text: Any) -> list[JSON]:
        return [self._chunk({"reasoning_content": text})] if isinstance(text, str) and text else []

    def _arguments(self, tool: _ToolBlock | None, piece: Any) -> list[JSON]:
        if tool is None or not isinstance(piece, str) or not piece:
            return []
        tool.has_input = True
        if tool.is_answer:
            return [self._chunk({"content": piece})]
        return [self._chunk({"tool_calls": [{"index": tool.tool_index, "function": {"arguments": piece}}]})]


# ─── adapter ──────────────────────────────────────────────────────────────────────────────────


def _headers(target: Target, body: bool = True) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if body:
        headers["content-type"] = "application/json"
    if target.api_key:
        headers["x-api-key"] = target.api_key
    headers.update(target.headers)
    return headers


class AnthropicAdapter(Adapter):
    gen_ai_system = "anthropic"
    ping_probe = "list_models"

    def build_chat(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        payload = build_payload(req, target.model)
        return UpstreamRequest("POST", target.base_url + "/v1/messages", _headers(target), orjson.dumps(payload))

    def build_ping(self, target: Target) -> UpstreamRequest:
        """`GET /v1/models` (the Models API): same x-api-key and anthropic-version as a message, no
        tokens; one model per page is enough to prove the key."""
        return UpstreamRequest("GET", target.base_url + "/v1/models?limit=1", _headers(target, body=False), b"")

    def parse_chat(self, status: int, body: bytes) -> ChatCompletion | ProviderError:
        parsed = self.decode_success(status, body, "content")
        if isinstance(parsed, ProviderError):
            return parsed
        if parsed.get("type") != "message":
            return UNEXPECTED_SHAPE
        try:
            return completion_from_message(parsed)
        except orjson.JSONEncodeError:  # a tool's input nested deeper than orjson writes (254; it reads 1,023)
            return UNEXPECTED_SHAPE

    def stream_translator(self, req: ChatRequest, target: Target) -> StreamTranslator:
        return AnthropicStreamTranslator(target.model, req.include_usage)

    def parse_error(self, status: int, body: bytes) -> ProviderError:
        return anthropic_error(status, body)
