"""How the `strata` command reaches a service: its address, the caller's token, and TLS.

From flags and the environment (STRATA_TOKEN, STRATA_TLS_*), else from the running
embedded stack (`.strata/stack.json`, its bootstrap admin token and its `cli` client
certificate under `.strata/tls`). A token is never taken from a flag: it would be
kept in the shell's history and shown to every user by `ps`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from strata.cli.stack import StackConfig
from strata.common.config import ConfigError
from strata.common.tls import TlsConfig, load_tls_config, open_channel


@dataclass(frozen=True)
class Target:
    """A service to call, as whom, over what."""

    address: str
    metadata: list[tuple[str, str]]
    tls: TlsConfig

    def channel(self) -> grpc.Channel:
        return open_channel(self.address, self.tls)


def _state(config: StackConfig) -> dict[str, Any]:
    state_file = config.home / "stack.json"
    return json.loads(state_file.read_text()) if state_file.exists() else {}


def client_tls(config: StackConfig, state: dict[str, Any] | None = None) -> TlsConfig:
    """The CLI's TLS settings: STRATA_TLS_* when set, else the running stack's `cli`
    certificate; plaintext only when STRATA_TLS_MODE=plaintext says so."""
    if any(k.startswith("STRATA_TLS_") for k in os.environ):
        try:
            return load_tls_config(os.environ)
        except ConfigError as exc:
            raise SystemExit(f"strata: {exc}") from None
    tls_dir = (state if state is not None else _state(config)).get("tls_dir")
    folder = Path(tls_dir) if tls_dir else config.home / "tls"
    files = {name: folder / name for name in ("cli.crt", "cli.key", "ca.crt")}
    if not all(p.exists() for p in files.values()):
        raise SystemExit(
            f"strata: no client certificate in {folder}: start the stack (`strata up`), or "
            "set STRATA_TLS_CERT, STRATA_TLS_KEY and STRATA_TLS_CA to a client certificate "
            "from your Strata CA"
        )
    return TlsConfig("mutual", str(files["cli.crt"]), str(files["cli.key"]), str(files["ca.crt"]))


def target(config: StackConfig, service: str, explicit: str, who: str) -> Target:
    """A service's address, the caller's bearer metadata (STRATA_TOKEN, else the stack's
    bootstrap admin token) and the CLI's TLS settings."""
    state = _state(config)
    address = explicit or state.get("services", {}).get(service, {}).get("grpc", "")
    token = os.environ.get("STRATA_TOKEN", "")
    if not token and state.get("admin_token_file"):
        token_path = Path(state["admin_token_file"])
        if token_path.exists():
            token = token_path.read_text().strip()
    if not address:
        raise SystemExit(
            f"no {service} service: start the stack (`strata up`) or pass --{service} host:port"
        )
    if not token:
        raise SystemExit(f"no token: set STRATA_TOKEN to {who} token")
    return Target(address, [("authorization", f"Bearer {token}")], client_tls(config, state))


def fail(command: str, exc: grpc.RpcError) -> int:
    """Print a refused call the way every command does; exit status 1."""
    print(f"strata {command}: {exc.code().name}: {exc.details()}")
    return 1
