"""Running `strata` as a user does: its command line, an environment on free ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strata.common.embedded import free_port_block

STRATA = [sys.executable, "-m", "strata.cli"]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    # Postgres, the broker, five gRPC ports, six metrics ports (the web's too), Prometheus,
    # the web UI.
    base = free_port_block(15)
    env.update(
        {
            "STRATA_HOME": str(home / ".strata"),
            "STRATA_PG_PORT": str(base),
            "STRATA_KAFKA_PORT": str(base + 1),
            "STRATA_GRPC_BASE_PORT": str(base + 2),
            "STRATA_METRICS_BASE_PORT": str(base + 7),
            "STRATA_PROMETHEUS_PORT": str(base + 13),
            "STRATA_WEB_PORT": str(base + 14),
            **extra,
        }
    )
    return env


def read_until(proc: subprocess.Popen, marker: str, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not printed in {timeout_s}s; got:\n" + "\n".join(lines))


def start_up(home: Path, env: dict[str, str], *flags: str) -> subprocess.Popen:
    """`strata up [flags]` in `home`, its output readable line by line."""
    return subprocess.Popen(
        [*STRATA, "up", *flags],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_strata(
    home: Path, env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`strata args...` in `home` to completion, its output captured."""
    return subprocess.run(
        [*STRATA, *args], env=env, cwd=home, capture_output=True, text=True, timeout=timeout_s
    )


@contextmanager
def running_stack(home: Path, env: dict[str, str], timeout_s: float = 180) -> Iterator[Any]:
    """`strata up` in `home` until the block ends; yields its .strata/stack.json."""
    up = start_up(home, env)
    try:
        read_until(up, "up and healthy", timeout_s)
        yield json.loads((home / ".strata" / "stack.json").read_text())
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
