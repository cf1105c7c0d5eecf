"""Azure OpenAI: OpenAI's wire format behind a deployment URL, an `api-version` and an `api-key`."""

from __future__ import annotations

from urllib.parse import quote

from adapters.base import Target
from adapters.openai import OpenAIAdapter

DEFAULT_API_VERSION = "2024-10-21"
STREAM_OPTIONS_SINCE = "2024-09-01"


class AzureAdapter(OpenAIAdapter):
    gen_ai_system = "az.ai.openai"

    def _deployment_url(self, target: Target, operation: str) -> str:
        return f"{target.base_url}/openai/deployments/{quote(target.model, safe='')}/{operation}{_version(target)}"

    def models_url(self, target: Target) -> str:
        # Models - List: the resource's models, authorised by the same api-key and api-version as a
        # deployment call; the resource answers it without naming a deployment.
        return f"{target.base_url}/openai/models{_version(target)}"

    def chat_url(self, target: Target) -> str:
        return self._deployment_url(target, "chat/completions")

    def embeddings_url(self, target: Target) -> str:
        return self._deployment_url(target, "embeddings")

    def asks_stream_usage(self, target: Target) -> bool:
        # `stream_options` exists from api-version 2024-09-01 on; older versions reject it (400).
        return (target.api_version or DEFAULT_API_VERSION) >= STREAM_OPTIONS_SINCE

    def output_limit_field(self, target: Target) -> str:
        # like stream_options, max_completion_tokens arrived in api-version 2024-09-01
        return "max_completion_tokens" if self.asks_stream_usage(target) else "max_tokens"

    def auth_headers(self, target: Target) -> dict[str, str]:
        return {"api-key": target.api_key} if target.api_key else {}


def _version(target: Target) -> str:
    return "?api-version=" + quote(target.api_version or DEFAULT_API_VERSION, safe="")
