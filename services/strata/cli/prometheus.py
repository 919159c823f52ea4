"""`strata up --prometheus`: a real Prometheus scraping every service of the embedded stack,
with the alert and recording rules of `deploy/prometheus/rules/`."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

# The repository's rule files; absent when strata is installed from a wheel.
RULES_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "rules"


class PrometheusNotInstalled(RuntimeError):
    """`--prometheus` was asked for but no Prometheus binary is there."""


def scrape_config(
    targets: Mapping[str, str], rule_files: Sequence[str], scrape_interval_s: int = 15
) -> dict[str, Any]:
    """Prometheus configuration: one job per service (`strata-<service>`), labelled with it."""
    interval = f"{scrape_interval_s}s"
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"stack": "strata-embedded"},
        },
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": f"strata-{service}",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target], "labels": {"service": service}}],
            }
            for service, target in targets.items()
        ],
    }


def render(config: Mapping[str, Any]) -> str:
    """The configuration as the YAML Prometheus reads."""
    return yaml.safe_dump(dict(config), sort_keys=False)


def find_binary(explicit: str = "") -> str:
    """The prometheus binary: STRATA_PROMETHEUS_BIN, else the one on PATH."""
    found = explicit or shutil.which("prometheus")
    if not found:
        raise PrometheusNotInstalled(
            "strata up --prometheus needs a Prometheus binary: install it "
            "(Debian/Ubuntu: apt-get install prometheus) or point STRATA_PROMETHEUS_BIN at one"
        )
    return found


class EmbeddedPrometheus:
    """A Prometheus child process on loopback, its data under the stack's home."""

    def __init__(
        self,
        home: Path,
        host: str,
        port: int,
        targets: Mapping[str, str],
        scrape_interval_s: int = 15,
        binary: str = "",
    ) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.targets = dict(targets)
        self.scrape_interval_s = scrape_interval_s
        self.binary = find_binary(binary)
        self.log_path = home / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.rules_copied = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        rules = self.home / "rules"
        shutil.rmtree(rules, ignore_errors=True)
        rules.mkdir()
        if RULES_DIR.is_dir():
            for path in sorted(RULES_DIR.glob("*.yml")):
                shutil.copy(path, rules / path.name)
                self.rules_copied += 1
        else:
            log.warning("no rule files at %s: Prometheus runs without alerts", RULES_DIR)
        path = self.home / "prometheus.yml"
        config = scrape_config(self.targets, [str(rules / "*.yml")], self.scrape_interval_s)
        path.write_text(render(config))
        return path

    def start(self, timeout_s: float = 60.0) -> None:
        config = self._write_config()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.home / 'data'}",
                    f"--web.listen-address={self.host}:{self.port}",
                    "--storage.tsdb.retention.time=2d",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with code {self.proc.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready within {timeout_s:.0f}s; see {self.log_path}")

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def query(base_url: str, promql: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """An instant query through Prometheus's HTTP API; the result vector."""
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        body = json.load(reply)
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body}")
    return list(body["data"]["result"])
