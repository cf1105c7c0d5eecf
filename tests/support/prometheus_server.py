"""A throwaway Prometheus on a free loopback port that scrapes the given targets every second.

`PrometheusServer.start()` installs the Debian `prometheus` package with apt-get when the binary is
missing (the package's service is not started: policy-rc.d denies it) and runs its own server with a
generated config, its TSDB in a temporary directory and the lifecycle and admin APIs enabled (the
process's own lifecycle is `ScratchServer`'s). One session-scoped server can be pointed at different
gateways with `set_targets()` (a config reload). Only the standard library is used to talk to it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tests.support.scratch_server import ScratchServer, free_port, installed_binary

JOB = "gateway"


class PrometheusError(RuntimeError):
    """An error answer from Prometheus' HTTP API (the message carries its errorType and error)."""


@dataclass
class PrometheusServer(ScratchServer):
    name: ClassVar[str] = "prometheus"
    targets: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    scrape_interval_s: float = 1.0
    metrics_path: str = "/metrics"
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prometheus-test-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "prometheus.yml"

    def _write_config(self) -> None:
        interval = f"{round(self.scrape_interval_s * 1000)}ms"
        scrape: dict[str, Any] = {"job_name": JOB, "metrics_path": self.metrics_path}
        if self.targets:
            scrape["static_configs"] = [{"targets": list(self.targets)}]
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [scrape],
        }
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(config, indent=2))  # JSON is YAML
        temporary.replace(self.config_path)

    # -- lifecycle (the rest is ScratchServer's) ----------------------------------------------------------

    def _prepare(self) -> list[str]:
        binary = installed_binary("prometheus", "prometheus")
        self._write_config()
        return [
            binary,
            f"--config.file={self.config_path}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",  # POST /-/reload
            "--web.enable-admin-api",  # delete_series()
            "--log.level=warn",
        ]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # -- HTTP API ----------------------------------------------------------------------------------------

    def _api(self, path: str, params: dict[str, str] | None = None, method: str = "GET") -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as error:  # 400/422/503 carry the JSON error body
            body = error.read()
            try:
                answer = json.loads(body)
            except ValueError:
                raise PrometheusError(f"{method} {path}: HTTP {error.code}: {body[:500]!r}") from None
            raise PrometheusError(f"{method} {path}: {answer.get('errorType')}: {answer.get('error')}") from None
        if not body:
            return None
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise PrometheusError(f"{method} {path}: {answer.get('errorType')}: {answer.get('error')}")
        return answer.get("data")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns `data.result` (for a vector: `[{"metric": {...}, "value": [t, "v"]}, ...]`)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("/api/v1/query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str) -> float | None:
        """The single value of an instant query (None when empty); raises when it returns several series."""
        data = self._api("/api/v1/query", {"query": promql})
        if data["resultType"] == "scalar":
            return float(data["result"][1])
        result = data["result"]
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} returned {len(result)} series: {[r['metric'] for r in result]}")
        return float(result[0]["value"][1])

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self._api("/api/v1/targets", {"state": "active"})["activeTargets"]
        return targets

    def wait_for_scrape(self, target: str, timeout_s: float = 30.0, fresh: bool = True) -> None:
        """Waits until `target` (host:port) is up and its samples are queryable.

        With `fresh` (the default), the scrape must have started after this call, so anything the test did
        before calling is in Prometheus afterwards (costs up to one scrape interval)."""
        since = time.time() if fresh else 0.0
        up = f'up{{job="{JOB}",instance="{target}"}}'
        promql = f"timestamp({up}) and {up} == 1"  # timestamp() of `up == 1` would be the evaluation time
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.query_value(promql)
            if value is not None and value >= since:
                return
            if time.monotonic() > deadline:
                state = [
                    {k: t.get(k) for k in ("scrapeUrl", "health", "lastError", "lastScrape")}
                    for t in self.active_targets()
                ]
                raise TimeoutError(f"no successful scrape of {target} within {timeout_s}s; targets: {state}")
            time.sleep(0.1)

    def set_targets(self, targets: Sequence[str], timeout_s: float = 30.0) -> None:
        """Points the scrape job at `targets` (config reload) and waits until Prometheus uses that exact set.

        Takes 3-6 s: Prometheus 2.x applies discovered targets on a fixed 5 s tick (not configurable)."""
        if list(targets) == self.targets and self.running:
            return
        self.targets = list(targets)
        self._write_config()
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{self.url}/-/reload", method="POST"), timeout=30):
                pass
        except urllib.error.HTTPError as error:
            raise PrometheusError(f"reload failed: HTTP {error.code}: {error.read()[:500]!r}") from None
        wanted = set(self.targets)
        deadline = time.monotonic() + timeout_s
        while True:
            active = {t["labels"].get("instance") for t in self.active_targets() if t["labels"].get("job") == JOB}
            if active == wanted:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus still scrapes {sorted(active)} {timeout_s}s after reload to {wanted}")
            time.sleep(0.05)

    def delete_series(self, match: str = '{__name__=~".+"}') -> None:
        """Deletes stored series (all by default) so a shared server starts a test without old samples."""
        self._api("/api/v1/admin/tsdb/delete_series", {"match[]": match}, method="POST")
        self._api("/api/v1/admin/tsdb/clean_tombstones", method="POST")
