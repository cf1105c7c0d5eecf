"""How the gateway reaches a provider besides its URL, on real sockets: through an egress proxy (the provider's
own `proxy`, else HTTPS_PROXY/HTTP_PROXY unless NO_PROXY names the host), and trusting a provider's private CA
(`ca_bundle`) besides the system's, with verification on by default."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ACME_KEY
from tests.support.gateway import RunningGateway, sha
from tests.support.raw_upstream import Conn, RawUpstream, completion, ok

CONFIG = """
providers:
  up: {{type: openai, base_url: "{url}/v1", api_key: "sk-upstream-egress-0001"{extra}}}
models:
  once: {{deployments: [{{provider: up, model: gpt-4o-mini}}], retries: 0, timeout_s: 8}}
tenants:
  acme:
    keys: [{{id: acme-1, sha256: "{key_sha}"}}]
    models: ["*"]
"""
PROXY_SECRET = "proxy-pass-0001"
MESSAGES = [{"role": "user", "content": "hi"}]


async def answer_all(conn: Conn) -> None:
    while await conn.request() is not None:
        await conn.write(ok(completion()))


def forward_proxy(target_port: int) -> RawUpstream:
    """A forward proxy (absolute-form HTTP and CONNECT) that sends every host to 127.0.0.1:target_port: a
    provider named llm.corp.invalid (a name no resolver knows) is reachable through it only."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(conn: Conn) -> None:
        head = await conn.reader.readuntil(b"\r\n\r\n")
        conn.server.extra.setdefault("seen", []).append(head.split(b"\r\n")[0].decode())
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        if head.startswith(b"CONNECT "):
            await conn.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            target = head.split(b" ")[1]
            up_writer.write(head.replace(target, b"/" + target.split(b"/", 3)[3], 1))
        await asyncio.gather(pipe(conn.reader, up_writer), pipe(up_reader, conn.writer))

    return RawUpstream(handle)


def ask(config: str) -> str:
    gateway = RunningGateway(config).start()
    try:
        direct = httpx.Client(trust_env=False)  # the client's own hop to the gateway ignores the proxy settings
        client = openai.OpenAI(
            base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=10, http_client=direct
        )
        try:
            return "OK " + str(
                client.chat.completions.create(model="once", messages=MESSAGES).choices[0].message.content
            )
        except openai.APIStatusError as exc:
            return f"ERR {exc.status_code} {exc.message}"
    finally:
        gateway.stop()


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets (lower-case names win over upper-case ones in urllib)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def proxied() -> Iterator[tuple[RawUpstream, RawUpstream]]:
    upstream = RawUpstream(answer_all).start()
    proxy = forward_proxy(upstream.port).start()
    yield upstream, proxy
    proxy.stop()
    upstream.stop()


def hidden_host_config(upstream: RawUpstream, extra: str = "") -> str:
    return CONFIG.format(url=f"http://llm.corp.invalid:{upstream.port}", extra=extra, key_sha=sha(ACME_KEY))


def test_the_environment_s_proxy_is_used(
    proxied: tuple[RawUpstream, RawUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream, proxy = proxied
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert ask(hidden_host_config(upstream)) == "OK hi"
    assert any("llm.corp.invalid" in line for line in proxy.extra["seen"])


@pytest.mark.parametrize(
    ("name", "value", "used"),
    [
        ("HTTP_PROXY", "{host}", True),  # no scheme: http://, as curl takes it
        ("ALL_PROXY", "socks5://{host}", False),  # another tool's, and not a protocol this client speaks
        ("HTTP_PROXY", "socks5://{host}", False),
    ],
    ids=["no-scheme", "all-proxy-socks", "socks"],
)
def test_what_the_environment_s_proxy_says_is_taken_as_curl_would_or_left_alone(
    proxied: tuple[RawUpstream, RawUpstream], monkeypatch: pytest.MonkeyPatch, name: str, value: str, used: bool
) -> None:
    upstream, proxy = proxied
    monkeypatch.setenv(name, value.format(host=f"127.0.0.1:{proxy.port}"))
    direct = CONFIG.format(url=upstream.url, extra="", key_sha=sha(ACME_KEY))  # reachable with or without it
    assert ask(direct) == "OK hi"
    assert bool(proxy.extra.get("seen")) is used


def test_a_provider_s_own_proxy_wins_and_its_credentials_stay_out_of_errors(
    proxied: tuple[RawUpstream, RawUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream, proxy = proxied
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    own = f"http://user:{PROXY_SECRET}@127.0.0.1:{proxy.port}"
    assert ask(hidden_host_config(upstream, f', proxy: "{own}"')) == "OK hi"
    dead = f"http://user:{PROXY_SECRET}@127.0.0.1:9"
    outcome = ask(hidden_host_config(upstream, f', proxy: "{dead}"'))
    assert outcome.startswith("ERR 502") and PROXY_SECRET not in outcome, outcome


def test_no_proxy_and_an_empty_proxy_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = RawUpstream(answer_all).start()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: only a direct call answers
    try:
        direct = CONFIG.format(url=upstream.url, extra="", key_sha=sha(ACME_KEY))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert ask(direct) == "OK hi"
        monkeypatch.delenv("NO_PROXY")
        assert ask(direct).startswith("ERR 502")  # (the environment's proxy is in the way)
        assert ask(CONFIG.format(url=upstream.url, extra=', proxy: ""', key_sha=sha(ACME_KEY))) == "OK hi"
    finally:
        upstream.stop()


def private_ca_upstream(tmp_path: Path) -> tuple[RawUpstream, Path]:
    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    key, ca = str(tmp_path / "ca.key"), str(tmp_path / "ca.crt")
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", ca, "-days", "2",
        "-subj", "/CN=Private CA")  # fmt: skip
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{tmp_path}/srv.key",
        "-out", f"{tmp_path}/srv.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("openssl", "x509", "-req", "-in", f"{tmp_path}/srv.csr", "-CA", ca, "-CAkey", key, "-CAcreateserial",
        "-out", f"{tmp_path}/srv.crt", "-days", "2", "-extfile", f"{tmp_path}/ext.cnf")  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    return RawUpstream(answer_all).start(ssl=context), tmp_path / "ca.crt"


def test_a_provider_s_private_ca_is_trusted_for_it_only(tmp_path: Path) -> None:
    upstream, ca = private_ca_upstream(tmp_path)
    url = f"https://127.0.0.1:{upstream.port}"
    try:
        unverified = ask(CONFIG.format(url=url, extra="", key_sha=sha(ACME_KEY)))
        trusted = ask(CONFIG.format(url=url, extra=f', ca_bundle: "{ca}"', key_sha=sha(ACME_KEY)))
    finally:
        upstream.stop()
    assert unverified.startswith("ERR 502"), unverified  # verified by default: the private CA is unknown
    assert trusted == "OK hi", trusted
