"""How the gateway names a place inside a JSON or YAML document: `tenants.acme.budgets[0].per`."""

from __future__ import annotations

from collections.abc import Sequence


def format_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"
