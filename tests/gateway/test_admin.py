"""The admin API: live tenant state (policies after inheritance, budgets) and circuits."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_TOKEN, BUDGET_KEY
from tests.support.gateway import RunningGateway
from tests.support.upstream import MockUpstream

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def test_admin_needs_the_token(gateway: RunningGateway) -> None:
    for path in ("/admin/tenants", "/admin/tenants/acme", "/admin/circuits"):
        assert httpx.get(gateway.url + path).status_code == 401
        assert httpx.get(gateway.url + path, headers={"authorization": "Bearer nope"}).status_code == 401


def test_every_authorization_line_must_carry_the_admin_token(gateway: RunningGateway) -> None:
    # which line a server reads must not decide who gets in (a proxy in front may check another line than we do)
    for lines in ([f"Bearer {ADMIN_TOKEN}", "Bearer nope"], ["Bearer nope", f"Bearer {ADMIN_TOKEN}"]):
        answer = httpx.get(gateway.url + "/admin/circuits", headers=[("authorization", line) for line in lines])
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_admin_token"
    twice = [("authorization", f"Bearer {ADMIN_TOKEN}")] * 2
    assert httpx.get(gateway.url + "/admin/circuits", headers=twice).status_code == 200


def test_tenant_view_shows_policies_and_live_budget(gateway: RunningGateway, upstream: MockUpstream) -> None:
    assert "budgeted" in httpx.get(gateway.url + "/admin/tenants", headers=ADMIN).json()["data"]
    before = httpx.get(gateway.url + "/admin/tenants/budgeted", headers=ADMIN).json()
    [budget] = before["limits"]
    assert (budget["unit"], budget["per"], budget["limit"]) == ("tokens", "day", 10000)
    assert budget["window_end"] - budget["window_start"] == 86400
    assert before["policies"]["pii"]["action"] == "redact"  # inherited from defaults
    assert before["limits_source"] == "in_process"  # no Redis: this process's counters are all there is
    httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        headers={"authorization": f"Bearer {BUDGET_KEY}"},
    )
    [after] = httpx.get(gateway.url + "/admin/tenants/budgeted", headers=ADMIN).json()["limits"]
    assert after["spent"] == budget["spent"] + 18  # the mock provider reports 18 tokens
    assert after["reserved"] == 0
    assert after["remaining"] == 10000 - after["spent"]
    blocker = httpx.get(gateway.url + "/admin/tenants/blocker", headers=ADMIN).json()
    assert blocker["policies"]["pii"] == {"action": "block", "entities": ["email", "credit_card"]}
    assert httpx.get(gateway.url + "/admin/tenants/nobody", headers=ADMIN).status_code == 404


def open_flaky_circuit(gateway: RunningGateway, upstream: MockUpstream) -> None:
    """Three upstream 500s open the `flaky` model's circuit (circuit.failures is 3)."""
    upstream.behaviour.status = 500
    for _ in range(3):
        httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer sk-test-acme-0001"},
        )


def test_circuits_view(gateway: RunningGateway, upstream: MockUpstream) -> None:
    open_flaky_circuit(gateway, upstream)
    circuits = httpx.get(gateway.url + "/admin/circuits", headers=ADMIN).json()["data"]
    assert circuits["up-openai/flaky-model"]["state"] == "open"
    assert circuits["up-openai/flaky-model"]["consecutive_failures"] == 3


def scrape(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(gateway.url + "/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_show_circuit_state_and_store_mode(gateway: RunningGateway, upstream: MockUpstream) -> None:
    open_flaky_circuit(gateway, upstream)
    samples = scrape(gateway)
    deployment = "up-openai/flaky-model"
    assert samples[("gateway_circuit_state", (("deployment", deployment), ("state", "open")))] == 1.0
    assert samples[("gateway_circuit_state", (("deployment", deployment), ("state", "closed")))] == 0.0
    assert samples[("gateway_circuit_consecutive_failures", (("deployment", deployment),))] == 3.0
    assert samples[("gateway_state_store_mode", (("mode", "in_process"),))] == 1.0
