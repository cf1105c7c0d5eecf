"""The only place that names providers: config `type` ─► adapter.

Everything else asks this registry; no other module compares provider names.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapters.anthropic import AnthropicAdapter
from adapters.azure import AzureAdapter
from adapters.base import Adapter
from adapters.mock import MockAdapter
from adapters.openai import OpenAIAdapter

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "openai": OpenAIAdapter(),
        "azure": AzureAdapter(),
        "anthropic": AnthropicAdapter(),
        "mock": MockAdapter(),
    }
)

# A provider type missing here needs `base_url` in config.yaml.
DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com", "mock": "local://mock"}
)


def adapter_for(provider_type: str) -> Adapter:
    return ADAPTERS[provider_type]


def provider_types() -> list[str]:
    return sorted(ADAPTERS)
