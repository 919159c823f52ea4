"""The tests' certificate authority: every service and client of a test speaks mutual TLS.

One local CA per test process, with a certificate for each service identity and two
client certificates (the tests' own, and the CLI's). Channels to a service are
opened with `client_channel` (a person's tool) or `as_service` (a service's identity).
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

import grpc
from strata.common.tls import LocalCA, TlsConfig, TlsFiles, ensure_local_pki, open_channel

SERVICES = ("sampler", "inference", "gateway", "quality", "training", "web", "kitcheck")
CLIENTS = ("tests", "cli")


@cache
def folder() -> Path:
    """One CA per test run: child processes (benchmark clients) find it in the environment."""
    if os.environ.get("STRATA_TESTS_PKI"):
        return Path(os.environ["STRATA_TESTS_PKI"])
    made = Path(tempfile.mkdtemp(prefix="strata-tests-tls-"))
    os.environ["STRATA_TESTS_PKI"] = str(made)
    return made


@cache
def pki() -> dict[str, TlsFiles]:
    return ensure_local_pki(folder(), SERVICES, clients=CLIENTS)


def ca() -> LocalCA:
    return LocalCA.load_or_create(folder())


def service_tls(identity: str) -> TlsConfig:
    """The TLS settings of a service process with `identity` (a generic one otherwise)."""
    files = pki()
    return (files[identity] if identity in files else files["kitcheck"]).config()


def client_tls() -> TlsConfig:
    return pki()["tests"].config()


def client_channel(address: str) -> grpc.Channel:
    """A channel as a person's tool: a client certificate that grants nothing by itself."""
    return open_channel(address, client_tls())


def as_service(address: str, identity: str) -> grpc.Channel:
    """A channel that calls as the service `identity` (its certificate)."""
    return open_channel(address, service_tls(identity))


def environ(identity: str) -> dict[str, str]:
    """STRATA_TLS_* for a service process of `identity`."""
    files = pki()
    return (files[identity] if identity in files else files["kitcheck"]).environ()
