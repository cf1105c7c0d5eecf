"""The `gateway` command, run as a real subprocess: check-config, keys new, encrypt-secret, serve refusals."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import secrets
from gateway.config.loader import load_text
from gateway.runtime import build_runtime

REPO = Path(__file__).resolve().parents[2]
MASTER = "cli-test-master-key-0123"
UNSET = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", secrets.MASTER_KEY_ENV)


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in UNSET}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_check_config_example_lists_disabled_providers() -> None:
    result = run("check-config", "config.example.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "config.example.yaml: ok (4 providers, 5 models, 1 tenants)\n"
        "  provider openai will be disabled: OPENAI_API_KEY is not set\n"
        "  provider anthropic will be disabled: ANTHROPIC_API_KEY is not set\n"
        "  provider azure will be disabled: AZURE_OPENAI_API_KEY is not set\n"
    )


def test_check_config_example_with_provider_vars_set() -> None:
    result = run(
        "check-config",
        "config.example.yaml",
        env={"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a", "AZURE_OPENAI_API_KEY": "az"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "config.example.yaml: ok (4 providers, 5 models, 1 tenants)\n"


def test_check_config_bad_file_prints_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "server: {port: 0, colour: red}\n"
        "events: {postgres_dsn: '${CLI_TEST_UNSET_DSN}'}\n"
        "tenants: {acme: {budgets: [{tokens: 10, per: week}, {tokens: 1, usd: 1, per: day}]}}\n",
        encoding="utf-8",
    )
    result = run("check-config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{path}: 5 problem(s)\n"
        "  events.postgres_dsn: environment variable CLI_TEST_UNSET_DSN is not set\n"
        "  server.port: input should be greater than or equal to 1\n"
        "  server.colour: unknown field\n"
        "  tenants.acme.budgets[0].per: must be one of minute, hour, day, month\n"
        "  tenants.acme.budgets[1]: a budget has exactly one of tokens or usd\n"
    )


def test_check_config_refuses_a_base_url_with_credentials_without_printing_them(tmp_path: Path) -> None:
    path = tmp_path / "creds.yaml"
    path.write_text("providers: {up: {type: openai, api_key: k, base_url: 'https://me:hunter2@h/v1'}}\n")
    result = run("check-config", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: 1 problem(s)\n  providers.up.base_url: must not hold credentials")
    assert "hunter2" not in result.stdout + result.stderr and "me:" not in result.stderr


def test_check_config_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("server:\n  port: 8080\n  host: a: b\n", encoding="utf-8")
    result = run("check-config", str(path))
    assert result.returncode == 1
    assert (
        result.stderr
        == f"{path}: 1 problem(s)\n  not valid YAML at line 3, column 10: mapping values are not allowed here\n"
    )
    missing = tmp_path / "missing.yaml"
    result = run("check-config", str(missing))
    assert result.returncode == 1
    assert result.stderr == f"{missing}: 1 problem(s)\n  {missing}: cannot be read (No such file or directory)\n"


KEY_LINE = re.compile(r"^key \(give it to tenant (?P<tenant>\S+); it is shown only once\): (?P<key>\S+)$")


@pytest.mark.parametrize(("extra", "expected_id"), [((), None), (("--id", "acme-ci"), "acme-ci")])
def test_keys_new_prints_key_and_matching_config_line(extra: tuple[str, ...], expected_id: str | None) -> None:
    result = run("keys", "new", "acme", *extra)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    match = KEY_LINE.match(lines[0])
    assert match, lines[0]
    assert match["tenant"] == "acme"
    key = match["key"]
    assert key.startswith("sk-gw-")
    assert len(key) >= 6 + 40
    assert lines[1] == "config line for tenants.acme.keys:"
    entry = yaml.safe_load(lines[2])
    assert isinstance(entry, list) and len(entry) == 1
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert entry[0]["sha256"] == digest
    if expected_id is None:
        assert re.fullmatch(r"acme-[0-9a-f]{6}", entry[0]["id"])
    else:
        assert entry[0]["id"] == expected_id
    # the printed line pasted into a config authenticates the printed key
    config = "tenants:\n  acme:\n    keys:\n" + lines[2].replace("  - ", "      - ", 1) + "\n"
    runtime = build_runtime(load_text(config, {}))
    identity = runtime.keys[digest]
    assert (identity.tenant.name, identity.key_id) == ("acme", entry[0]["id"])


def test_keys_new_mints_a_different_key_each_time() -> None:
    first, second = run("keys", "new", "acme"), run("keys", "new", "acme")
    assert first.stdout.splitlines()[0] != second.stdout.splitlines()[0]


@pytest.mark.parametrize("stdin", ["sk-secret-value-1\n", "sk-secret-value-1", "sk-secret-value-1\r\n"])
def test_encrypt_secret_round_trips(stdin: str) -> None:
    result = run("encrypt-secret", env={secrets.MASTER_KEY_ENV: MASTER}, stdin=stdin)
    assert result.returncode == 0, result.stderr
    value = result.stdout.strip()
    assert result.stdout == value + "\n"
    assert value.startswith("enc:v1:")
    assert "sk-secret-value-1" not in result.stdout + result.stderr
    assert secrets.decrypt(value, MASTER) == "sk-secret-value-1"


def test_encrypt_secret_output_loads_in_config() -> None:
    result = run("encrypt-secret", env={secrets.MASTER_KEY_ENV: MASTER}, stdin="sk-provider\n")
    assert result.returncode == 0, result.stderr
    text = f'providers: {{o: {{type: openai, api_key: "{result.stdout.strip()}"}}}}'
    assert load_text(text, {secrets.MASTER_KEY_ENV: MASTER}).config.providers["o"].api_key == "sk-provider"


@pytest.mark.parametrize(
    ("env", "stdin", "message"),
    [
        pytest.param({}, "sk-x\n", "gateway: GATEWAY_MASTER_KEY is not set", id="no-master-key"),
        pytest.param(
            {secrets.MASTER_KEY_ENV: ""}, "sk-x\n", "gateway: GATEWAY_MASTER_KEY is not set", id="empty-master-key"
        ),
        pytest.param(
            {secrets.MASTER_KEY_ENV: "short"},
            "sk-x\n",
            "gateway: GATEWAY_MASTER_KEY must be at least 16 characters",
            id="short-master-key",
        ),
        pytest.param(
            {secrets.MASTER_KEY_ENV: MASTER}, "\n", "gateway: nothing to encrypt on standard input", id="empty"
        ),
    ],
)
def test_encrypt_secret_refuses(env: dict[str, str], stdin: str, message: str) -> None:
    result = run("encrypt-secret", env=env, stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_serve_with_two_workers_without_redis_refuses_to_start() -> None:
    result = run("serve", "--config", "config.example.yaml", "--workers", "2", "--port", "18999", timeout=20)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "--workers > 1 needs state.redis_url" in result.stderr
    assert "Uvicorn running" not in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_workers_2_in_config_without_redis_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server: {workers: 2, port: 18998}\n", encoding="utf-8")
    result = run("serve", "--config", str(path), timeout=20)
    assert result.returncode == 2
    assert result.stderr == (
        f"{path}: 1 problem(s)\n"
        "  server.workers: more than 1 worker needs state.redis_url (in-process counters would multiply every "
        "budget and rate limit by the number of workers)\n"
    )


def test_serve_with_bad_config_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server: {port: 18997, colour: red}\n", encoding="utf-8")
    result = run("serve", "--config", str(path), timeout=20)
    assert result.returncode == 2
    assert result.stderr == f"{path}: 1 problem(s)\n  server.colour: unknown field\n"


@pytest.mark.parametrize("key_id", ["2024", "yes", "null", "prod #2", "*prod", "a, b: c"])
def test_keys_new_prints_a_line_that_loads(key_id: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "new", "acme", "--id", key_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = out.splitlines()[-1]
    config = load_text(
        "providers: {demo: {type: mock}}\nmodels: {demo: {deployments: [{provider: demo, model: m}]}}\n"
        f"tenants:\n  acme:\n    keys:\n    {line}\n"
    ).config
    assert config.tenants["acme"].keys[0].id == key_id


def test_keys_new_refuses_an_empty_tenant() -> None:
    result = run("keys", "new", " ")
    assert result.returncode == 2 and result.stdout == ""
    assert "empty" in result.stderr and "Traceback" not in result.stderr


def test_encrypt_secret_refuses_input_that_is_not_utf8() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "encrypt-secret"],
        cwd=REPO,
        env={**os.environ, secrets.MASTER_KEY_ENV: MASTER},
        input=b"\xff\xfe secret",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == b""
    assert b"not UTF-8" in result.stderr and b"Traceback" not in result.stderr
