"""The browser tier: a stack `strata up` started (TLS on, the web service with it), a
project with people and items in it, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from strata.common.tls import TlsConfig, open_channel
from strata.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    quality_pb2_grpc,
    sampler_pb2,
    sampler_pb2_grpc,
)

from ..e2e.support import env_for, running_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots of every page, kept with the test output (not committed).
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"

CONTRACT = """
project: {project}
version: '1'
classes:
  - name: cat
    definition: the text is about a cat
    examples: {{positive: ["a cat sleeps on the mat"], negative: ["a dog barks"]}}
  - name: dog
    definition: the text is about a dog
overlap: {{min: {overlap}, max: {overlap}}}
consensus_threshold: {threshold}
gold: {{rate: 0}}
edge_cases:
  - case: both a cat and a dog
    ruling: label the animal named first
"""


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"the browser tests drive Debian's Chromium at {CHROMIUM}, which is not installed: "
            "run `make test` (it installs it) or `sudo apt-get install chromium`",
            pytrace=False,
        )


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class Stack:
    home: Path
    web: str
    pg_dsn: str
    admin_token: str
    grpc: dict[str, str]
    tls_dir: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    def _channel(self, service: str) -> grpc.Channel:
        d = self.tls_dir
        tls = TlsConfig("mutual", str(d / "cli.crt"), str(d / "cli.key"), str(d / "ca.crt"))
        channel = open_channel(self.grpc[service], tls)
        self.channels.append(channel)
        return channel

    def gateway(self) -> Any:
        return gateway_pb2_grpc.AnnotationGatewayStub(self._channel("gateway"))

    def sampler(self) -> Any:
        return sampler_pb2_grpc.SamplerStub(self._channel("sampler"))

    def quality(self) -> Any:
        return quality_pb2_grpc.QualityStub(self._channel("quality"))


def run_stack(home: Path, **extra: str) -> Iterator[Stack]:
    env = env_for(home, STRATA_QUALITY_ESTIMATE_INTERVAL_S="3600", **extra)
    with running_stack(home, env) as state:
        stack = Stack(
            home,
            state["web"],
            state["pg_dsn"],
            Path(state["admin_token_file"]).read_text().strip(),
            {n: v["grpc"] for n, v in state["services"].items()},
            Path(state["tls_dir"]),
        )
        yield stack
        for channel in stack.channels:
            channel.close()


@dataclass
class Project:
    name: str
    tokens: dict[str, str]  # person -> token


def make_project(
    stack: Stack, people: dict[str, int], items: int, overlap: int = 1, threshold: float = 0.5
) -> Project:
    """A project with its contract, `people` (id -> role) and `items` text items."""
    admin = bearer(stack.admin_token)
    gw = stack.gateway()
    name = f"p{uuid.uuid4().hex[:6]}"
    gw.LoadContract(
        gateway_pb2.LoadContractRequest(
            document=CONTRACT.format(project=name, overlap=overlap, threshold=threshold)
        ),
        metadata=admin,
    )
    tokens = {}
    for person, role in people.items():
        gw.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(annotator_id=person, role=role, project=name),  # type: ignore[arg-type]
            metadata=admin,
        )
        tokens[person] = gw.IssueToken(
            gateway_pb2.IssueTokenRequest(annotator_id=person), metadata=admin
        ).token
    rows = [
        sampler_pb2.ImportRow(
            line=i + 1,
            external_id=f"t{i}",
            content=common_pb2.ItemContent(
                text=f"{'a cat' if i % 2 else 'a dog'} in text number {i} ({uuid.uuid4().hex[:8]})"
            ),
        )
        for i in range(items)
    ]
    stack.sampler().ImportItems(
        iter([sampler_pb2.ImportItemsRequest(project=name, rows=rows)]), metadata=admin
    )
    return Project(name, tokens)


def sign_in(page: Any, stack: Stack, token: str) -> None:
    page.goto(f"{stack.web}/signin")
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{stack.web}/projects")


def label(stack: Stack, project: Project, person: str, value: str) -> str:
    """`person` labels the next task with `value` over gRPC; returns its item."""
    gw = stack.gateway()
    who = bearer(project.tokens[person])

    def lease() -> gateway_pb2.Task | None:
        reply = gw.NextTask(gateway_pb2.NextTaskRequest(project=project.name), metadata=who)
        return reply.task if reply.HasField("task") else None

    task = until(lease, 60, f"a task for {person}")
    gw.SubmitLabel(
        gateway_pb2.SubmitLabelRequest(task_id=task.task_id, value=value, duration_ms=1500),
        metadata=who,
    )
    return str(task.item_id)


def launch_browser(playwright: Any, user_data: Path) -> Any:
    """Debian's Chromium, headless, with a fresh profile (never `playwright install`)."""
    need_chromium()
    shutil.rmtree(user_data, ignore_errors=True)
    return playwright.chromium.launch_persistent_context(
        str(user_data),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 800},
        env={**os.environ, "TZ": "UTC"},
    )


def shoot(page: Any, name: str) -> Path:
    """A screenshot of the page as it is now, at 1280x800 and at phone width."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(size)
    return path
