"""What a valid OpenAI request looks like, checked with pydantic; the client's dict is kept as is.

Only the fields the gateway or an adapter relies on are typed. Unknown top-level fields pass through
(OpenAI adds parameters often; an OpenAI-style upstream should see them), while the fields we do
type are checked strictly enough that an adapter can trust their shape.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gateway.errors import InvalidRequest
from gateway.paths import format_path

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


# Longer than any provider's model or deployment name (Azure's are at most 64 characters): a name is echoed in
# errors, the request log, usage events and spans, so one of megabytes is refused, not copied everywhere.
MAX_MODEL_NAME = 256


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(Open):
    type: Literal["text"]
    text: str


class ImageURL(Open):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Open):
    type: Literal["image_url"]
    image_url: ImageURL


class AudioPart(Open):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(Open):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(Open):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


class FunctionCall(Open):
    name: str
    arguments: str


class FunctionToolCall(Open):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CustomCall(Open):
    name: str
    input: str


class CustomToolCall(Open):
    id: str
    type: Literal["custom"]
    custom: CustomCall


ToolCall = Annotated[FunctionToolCall | CustomToolCall, Field(discriminator="type")]


class SystemMessage(Open):
    role: Literal["system", "developer"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None


class UserMessage(Open):
    role: Literal["user"]
    content: str | Annotated[list[UserPart], Field(min_length=1)]
    name: str | None = None


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: str | Annotated[list[AssistantPart], Field(min_length=1)] | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    name: str | None = None


class ToolMessage(Open):
    role: Literal["tool"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    tool_call_id: str


class FunctionMessage(Open):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(Open):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(Open):
    type: Literal["function"]
    function: FunctionDefinition


class CustomDefinition(Open):
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomTool(Open):
    type: Literal["custom"]
    custom: CustomDefinition


Tool = Annotated[FunctionTool | CustomTool, Field(discriminator="type")]


class NamedFunction(Open):
    name: str


class NamedToolChoice(Open):
    type: Literal["function"]
    function: NamedFunction


class NamedCustomToolChoice(Open):
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(Open):
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class AllowedToolsChoice(Open):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


ToolChoice = Annotated[NamedToolChoice | NamedCustomToolChoice | AllowedToolsChoice, Field(discriminator="type")]


class JSONSchemaFormat(Open):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class PlainResponseFormat(Open):
    type: Literal["text", "json_object"]


class JSONSchemaResponseFormat(Open):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat  # required, as OpenAI has it: no adapter makes up a schema the client never gave


ResponseFormat = Annotated[PlainResponseFormat | JSONSchemaResponseFormat, Field(discriminator="type")]


class StreamOptions(Open):
    include_usage: bool | None = None


class ChatCompletionRequest(Open):
    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME)]
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None


EmbeddingInput = (
    Annotated[str, Field(min_length=1)]
    | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=2048)]
    | Annotated[list[int], Field(min_length=1, max_length=2048)]
    | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1, max_length=2048)]
)


class EmbeddingsRequestModel(Open):
    model: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME)]
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None
    user: str | None = None


_chat = TypeAdapter(ChatCompletionRequest)
_embeddings = TypeAdapter(EmbeddingsRequestModel)


MAX_DEPTH = 128  # orjson reads 1,023 levels but writes only 254, and a provider's body nests ours a few deeper
ORJSON_WRITE_DEPTH = 254  # the deepest orjson writes (tests/gateway/test_errors checks it)


def _loads_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be a JSON object "
            f"({exc.msg} at position {exc.pos}).",
            code="invalid_json",
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequest("The body of your request must be a JSON object.", code="invalid_json")
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _nests_deeper(payload, MAX_DEPTH):  # counts: C speed
        raise InvalidRequest(
            f"The JSON body of your request nests deeper than {MAX_DEPTH} levels.", code="invalid_json"
        )
    return payload


def _nests_deeper(payload: Any, limit: int) -> bool:
    """Whether `payload` holds containers deeper than `limit`: orjson, asked to write it inside enough lists that
    only a deeper payload passes its own limit, tells in C (walking it in Python took 120 ms for 2,048 token
    arrays)."""
    wrapped = payload
    for _ in range(ORJSON_WRITE_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        return "Recursion" in str(exc)
    return False


def _is_branch_label(part: str) -> bool:
    """Pydantic names union branches in error paths (`str`, `list[...]`, `NamedToolChoice`)."""
    return part in _BRANCH_LABELS or not part.isidentifier() or part[:1].isupper()


_BRANCH_LABELS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _mismatch(kind: str) -> bool:
    return kind.endswith("_type") or kind == "literal_error"


def _first_error(exc: ValidationError) -> InvalidRequest:
    # Of a union's alternatives, the error that got deepest says best what was meant, after any that says more
    # than "not of this branch's type or value": `stop` with five strings is too long a list, not "not a string".
    errors = exc.errors(include_url=False, include_input=False)
    error = max(errors, key=lambda e: (not _mismatch(e["type"]), len(e["loc"])))
    loc = tuple(error["loc"])
    kind = error["type"]
    # A discriminated union puts the tag into the path (messages.0.user.content); drop it.
    clean: list[int | str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and (
            _is_branch_label(part)
            or (i > 0 and part in _TAGS and (isinstance(loc[i - 1], int) or _holds_tagged_union(str(loc[i - 1]))))
        ):
            continue
        clean.append(part)
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        tag = "role" if clean and clean[0] == "messages" and len(clean) == 2 else "type"
        param = format_path((*clean, tag))
        expected = error.get("ctx", {}).get("expected_tags", "")
        if kind == "union_tag_not_found":
            return InvalidRequest(
                f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            )
        return InvalidRequest(
            f"Invalid value for '{param}': expected one of {expected}.", param=param, code="invalid_value"
        )
    param = format_path(tuple(clean))
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if kind == "too_short" and param == "messages":
        return InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.", param=param, code="empty_array"
        )
    return InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param, code="invalid_value")


_TAGS = frozenset(ROLES) | frozenset(
    {"text", "image_url", "input_audio", "file", "refusal", "custom", "allowed_tools", "json_object", "json_schema"}
)
_TAGGED_FIELDS = frozenset({"response_format"})  # fields whose value is itself a discriminated union


def _holds_tagged_union(part: str) -> bool:
    """Whether the path's `part` is a union's (a branch label, or a field typed as a discriminated union), so that
    the part after it is the tag pydantic puts in (`response_format.json_schema.json_schema`): not the client's."""
    return part in _TAGGED_FIELDS or _is_branch_label(part)


def _parse(schema: TypeAdapter[Any], body: bytes, model: str | None) -> dict[str, Any]:
    """`model`, when given, comes from the URL (Azure-style paths) and wins over the body's."""
    payload = _loads_object(body)
    if model is not None:
        payload["model"] = model
    try:
        schema.validate_python(payload, strict=True)
    except ValidationError as exc:
        raise _first_error(exc) from None
    return payload


def parse_chat(body: bytes, model: str | None = None) -> dict[str, Any]:
    payload = _parse(_chat, body, model)
    if payload.get("stream_options") is not None and payload.get("stream") is not True:
        # as OpenAI refuses it: the options of a stream never asked for would be dropped without a word
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    if payload.get("tool_choice") not in (None, "auto", "none") and not payload.get("tools"):
        # a tool call demanded with no tool to call: OpenAI refuses it; an adapter with no tools to send would drop
        # the demand, and the client would get text as if it had made none
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
            code="invalid_value",
        )
    return payload


def parse_embeddings(body: bytes, model: str | None = None) -> dict[str, Any]:
    return _parse(_embeddings, body, model)
