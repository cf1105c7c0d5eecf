"""Reloading the config file: concurrent reloads end on the newest file, and a reload says which settings it
read but cannot apply until a restart, and a file that changes under the load is a rejected load."""

from __future__ import annotations

import json
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.config.loader import ConfigError, load_text
from gateway.runtime import build_runtime
from tests.support.gateway import RunningGateway, settled_limits, sha

ADMIN = "admin-reload-tests"


def small_config(tag: str, tenants: int = 0, extra: str = "") -> str:
    many = "".join(
        f'  t{i}: {{keys: [{{id: k{i}, sha256: "{sha(tag + str(i))}"}}], models: ["*"]}}\n' for i in range(tenants)
    )
    return f"""admin: {{token_sha256: "{sha(ADMIN)}"}}
{extra}providers: {{demo: {{type: mock}}}}
models: {{demo: {{deployments: [{{provider: demo, model: m}}]}}}}
tenants:
  marker_{tag}: {{keys: [{{id: km, sha256: "{sha("marker" + tag)}"}}], models: ["*"]}}
{many}"""


def markers(gateway: RunningGateway) -> list[str]:
    answer = httpx.get(gateway.url + "/admin/tenants", headers={"authorization": f"Bearer {ADMIN}"})
    return [name for name in answer.json()["data"] if name.startswith("marker_")]


def test_concurrent_reloads_the_newest_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    gateway = RunningGateway(small_config("v0"), config_path=path).start()
    try:
        path.write_text(small_config("v1", tenants=3000))  # slow to compile
        first = threading.Thread(
            target=httpx.post,
            args=(gateway.url + "/admin/reload",),
            kwargs={"headers": {"authorization": f"Bearer {ADMIN}"}, "timeout": 120},
        )
        first.start()
        time.sleep(0.2)  # the first reload has read v1 and is compiling it
        path.write_text(small_config("v2"))
        second = httpx.post(gateway.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"}, timeout=120)
        assert second.status_code == 200
        first.join()
        assert markers(gateway) == ["marker_v2"], "the file on disk is v2; an older read overwrote it"
    finally:
        gateway.stop()


def test_a_reload_says_which_changes_need_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    gateway = RunningGateway(small_config("v0"), config_path=path).start()
    try:
        events = path.read_text().splitlines()[0]  # the scratch events: line RunningGateway wrote
        path.write_text(
            events + "\n" + small_config("v0", extra="state: {on_error: fail_open}\nserver: {drain_timeout_s: 5}\n")
        )
        answer = httpx.post(gateway.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        assert answer.status_code == 200
        assert answer.json()["needs_restart"] == ["server.drain_timeout_s", "state"]
    finally:
        gateway.stop()


def test_a_ca_file_gone_between_its_check_and_its_use_rejects_the_load(tmp_path: Path) -> None:
    """The schema reads a provider's `ca_bundle` to check it, and the build reads it again: a rotation between the
    two is a rejected load (the old config keeps serving), not an internal error."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt").read_bytes())
    text = f"""providers: {{up: {{type: openai, base_url: "https://llm.internal/v1", ca_bundle: "{ca}"}}}}
models: {{gpt: {{deployments: [{{provider: up, model: m}}]}}}}
tenants: {{t: {{keys: [{{id: k, sha256: "{sha("k")}"}}], models: ["*"]}}}}
"""
    loaded = load_text(text)  # checked: readable certificates
    ca.unlink()
    with pytest.raises(ConfigError) as caught:
        build_runtime(loaded)
    assert caught.value.problems == ["providers.up.ca_bundle: cannot be read (FileNotFoundError)"]


def budgeted_config(events: str, budgets: str) -> str:
    return f"""{events}
admin: {{token_sha256: "{sha(ADMIN)}"}}
providers: {{demo: {{type: mock}}}}
models: {{demo: {{deployments: [{{provider: demo, model: m}}]}}}}
pricing: {{demo: {{input: 1.0, output: 1.0}}}}
tenants:
  spender: {{keys: [{{id: ks, sha256: "{sha("spender")}"}}], models: ["*"], budgets: {budgets}}}
"""


def test_a_reload_that_moves_a_budget_in_the_list_keeps_its_spend(tmp_path: Path) -> None:
    """Counters belong to a unit and a window, not to a budget's place in the list: removing the budget before it
    (or adding one) must not hand the tenant a fresh day."""
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    worst = len(json.dumps(body, separators=(",", ":"))) + 10
    path = tmp_path / "config.yaml"
    events = f"events: {{sqlite_path: '{tmp_path}/usage.sqlite', spool_dir: '{tmp_path}/spool'}}"
    path.write_text(budgeted_config(events, f"[{{usd: 100, per: month}}, {{tokens: {worst + 5}, per: day}}]"))
    gateway = RunningGateway(path.read_text(), config_path=path).start()

    def ask() -> int:
        headers = {"authorization": "Bearer spender", "content-type": "application/json"}
        content = json.dumps(body, separators=(",", ":"))
        return httpx.post(gateway.url + "/v1/chat/completions", content=content, headers=headers).status_code

    try:
        first, second = ask(), ask()  # the first spends 11 tokens: the worst case no longer fits
        path.write_text(budgeted_config(events, f"[{{tokens: {worst + 5}, per: day}}]"))
        reloaded = httpx.post(gateway.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        assert reloaded.json()["status"] == "reloaded"
        after = ask()
        [day] = settled_limits(gateway, "spender")
    finally:
        gateway.stop()
    assert (first, second) == (200, 429)
    assert after == 429, "the day's spend was lost with the budget's place in the list"
    assert (day.spec.name, day.spent) == ("tokens_per_day", 11)


@pytest.mark.parametrize(
    ("provider", "problem"),
    [
        # before: a ValueError, answered 500
        ('up: {type: openai, api_key: k, base_url: "http://[::1/v1"}', "must be a valid http:// or https:// URL"),
        # before: reloaded, and every request to it failed (aiohttp takes no URL credentials with an Authorization)
        ('up: {type: openai, api_key: k, base_url: "https://me:hunter2@llm.internal/v1"}', "must not hold credentials"),
        ('up: {type: openai, api_key: k, proxy: "${PROXY_HOST_UNSET}:3128"}', None),  # before: an AssertionError, 500
    ],
)
def test_a_reload_of_a_file_that_cannot_be_compiled_is_rejected_and_the_old_config_serves(
    tmp_path: Path, provider: str, problem: str | None
) -> None:
    path = tmp_path / "config.yaml"
    gateway = RunningGateway(small_config("v0"), config_path=path).start()
    try:
        text = path.read_text().replace(
            "providers: {demo: {type: mock}}", f"providers:\n  demo: {{type: mock}}\n  {provider}"
        )
        path.write_text(text.replace("marker_v0", "marker_v1"))
        answer = httpx.post(gateway.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        if problem is None:  # an unset variable in a provider disables it: a good file
            assert answer.status_code == 200, answer.text
            assert answer.json()["disabled_providers"] == {"up": "PROXY_HOST_UNSET is not set"}
            assert markers(gateway) == ["marker_v1"]
        else:
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == "config_invalid"
            message = answer.json()["error"]["message"]
            assert f"providers.up.base_url: {problem}" in message
            assert "hunter2" not in message and "me:" not in message
            assert markers(gateway) == ["marker_v0"]
    finally:
        gateway.stop()


def test_a_reload_whose_compilation_fails_unexpectedly_is_rejected_and_the_old_config_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A schema-valid file that the build cannot compile (an `rpm` too large for a float: an OverflowError, not a
    ConfigError) is a rejected reload like any bad file, logged without the file's values, not a bare 500."""
    path = tmp_path / "config.yaml"
    gateway = RunningGateway(small_config("v0"), config_path=path).start()
    huge = "9" * 400
    try:
        text = path.read_text().replace("marker_v0", "marker_v1")
        path.write_text(text.replace('models: ["*"]}', f'models: ["*"], rate_limits: {{rpm: {huge}}}}}', 1))
        with caplog.at_level("ERROR", logger="gateway"):
            answer = httpx.post(gateway.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "config_invalid"
        assert "previous config keeps serving" in error["message"]
        assert markers(gateway) == ["marker_v0"]
        assert any("reload rejected" in record.getMessage() for record in caplog.records)
        assert huge not in caplog.text and huge not in answer.text
    finally:
        gateway.stop()
