"""`gateway serve` as a real process: the README's first command, SIGHUP reload, start-up reports."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import free_port, sha
from tests.support.serve import Served, serve, shut_down, wait_ready

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_KEY = "sk-gw-demo-key-for-acme"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, int, Path]]:
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.example.yaml").read_text())
    port = free_port()
    process = serve(config, port)
    try:
        wait_ready(port, process)
        yield process, port, config
    finally:
        shut_down(process)


def chat(port: int, key: str = EXAMPLE_KEY) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_example_config_serves_demo_and_reports_disabled_providers(
    served: tuple[Served, int, Path],
) -> None:
    process, port, _ = served
    response = chat(port)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("This is the mock provider")
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0  # after the readiness grace period (5 s in the example) and the drain
    output = process.output()
    for provider in ("openai", "anthropic", "azure"):
        assert output.count(f"provider {provider} is disabled") == 1, output


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(served: tuple[Served, int, Path]) -> None:
    process, port, config = served
    good = config.read_text()
    new_key = "sk-test-sighup"
    config.write_text(good.replace("budgets:", "budgets: []\n    _broken: 1\n    x_budgets:"))
    process.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert chat(port).status_code == 200  # old config still serving
    config.write_text(good + f'  newcomer:\n    keys: [{{id: n-1, sha256: "{sha(new_key)}"}}]\n    models: [demo]\n')
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while chat(port, new_key).status_code != 200:
        assert time.monotonic() < deadline, "SIGHUP did not reload the config"
        time.sleep(0.1)
    assert chat(port).status_code == 200
