"""Mutual TLS: who may connect, who the server says called, and the local CA's files.

The handshakes are real: a gRPC Health server on 127.0.0.1:0 and real clients.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from strata.common.config import ConfigError
from strata.common.tls import (
    LocalCA,
    Peer,
    TlsConfig,
    TlsFiles,
    ensure_local_pki,
    load_tls_config,
    open_channel,
    peer_of,
    server_credentials,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class WhoCalled(health.HealthServicer):
    """Health, noting the peer of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Peer] = []

    def Check(self, request, context):
        self.peers.append(peer_of(context))
        return super().Check(request, context)


@contextmanager
def health_server(credentials: grpc.ServerCredentials) -> Iterator[tuple[str, WhoCalled]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = WhoCalled()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def check(channel: grpc.Channel) -> health_pb2.HealthCheckResponse:
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10)


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        check(channel)
    return err.value.code()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, TlsFiles]:
    return ensure_local_pki(tmp_path / "tls", services=["sampler", "gateway"], clients=["cli"])


@pytest.fixture
def sampler(pki: dict[str, TlsFiles]) -> Iterator[tuple[str, WhoCalled]]:
    credentials = server_credentials(pki["sampler"].config())
    assert credentials is not None
    with health_server(credentials) as served:
        yield served


def copy_as_secret(files: TlsFiles, folder: Path) -> TlsFiles:
    """The files as a mounted Secret holds them; each replaced whole, as the kubelet does."""
    folder.mkdir(exist_ok=True)
    secret = TlsFiles(folder / "tls.crt", folder / "tls.key", folder / "ca.crt")
    for part in ("cert", "key", "ca"):
        staged = folder / "staged"
        staged.write_bytes(getattr(files, part).read_bytes())
        staged.replace(getattr(secret, part))
    return secret


def write_pair(folder: Path, name: str, pair: tuple[bytes, bytes], ca: Path) -> TlsFiles:
    files = TlsFiles(folder / f"{name}.crt", folder / f"{name}.key", ca)
    files.cert.write_bytes(pair[0])
    files.key.write_bytes(pair[1])
    return files


# -- handshakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "peer"), [("gateway", Peer("service", "gateway")), ("cli", Peer("client", "cli"))]
)
def test_the_server_knows_who_called_from_the_certificate(pki, sampler, name, peer) -> None:
    target, servicer = sampler
    assert check(open_channel(target, pki[name].config())).status == SERVING
    assert servicer.peers == [peer]


def test_a_plaintext_client_is_refused(sampler) -> None:
    target, servicer = sampler
    assert refused(grpc.insecure_channel(target)) == UNAVAILABLE
    assert servicer.peers == []


def test_a_client_without_a_certificate_is_refused(pki, sampler) -> None:
    target, servicer = sampler
    trusting = grpc.ssl_channel_credentials(pki["cli"].ca.read_bytes())
    assert refused(grpc.secure_channel(target, trusting)) == UNAVAILABLE
    assert servicer.peers == []


def test_a_certificate_from_another_ca_is_refused(tmp_path, pki, sampler) -> None:
    target, servicer = sampler
    other = LocalCA.load_or_create(tmp_path / "other")
    impostor = other.ensure("service", "gateway")
    # It trusts the real CA, so only the server's check of its certificate can stop it.
    cfg = TlsConfig("mutual", str(impostor.cert), str(impostor.key), str(pki["gateway"].ca))
    assert refused(open_channel(target, cfg)) == UNAVAILABLE
    assert servicer.peers == []


def test_an_expired_certificate_from_the_right_ca_is_refused(tmp_path, pki, sampler) -> None:
    target, servicer = sampler
    ca = LocalCA.load_or_create(pki["cli"].ca.parent)
    now = datetime.now(UTC)
    pair = ca.issue(
        "client", "cli", not_before=now - timedelta(days=91), not_after=now - timedelta(days=1)
    )
    expired = write_pair(tmp_path, "expired", pair, ca.ca_path)
    assert refused(open_channel(target, expired.config())) == UNAVAILABLE
    assert servicer.peers == []


def test_rotated_files_are_served_without_a_restart(tmp_path, pki) -> None:
    mounted = copy_as_secret(pki["sampler"], tmp_path / "secret")
    credentials = server_credentials(mounted.config())
    assert credentials is not None
    with health_server(credentials) as (target, servicer):
        check(open_channel(target, pki["gateway"].config()))
        # cert-manager renews the secret in place, here under a new CA as well; the next
        # handshake uses the new files.
        renewed = ensure_local_pki(tmp_path / "renewed", services=["sampler", "gateway"])
        copy_as_secret(renewed["sampler"], tmp_path / "secret")
        check(open_channel(target, renewed["gateway"].config()))
        assert refused(open_channel(target, pki["gateway"].config())) == UNAVAILABLE
        assert servicer.peers == [Peer("service", "gateway")] * 2


# -- peer_of, without a network ---------------------------------------------------------


class Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self.auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


@pytest.mark.parametrize(
    ("auth", "peer"),
    [
        ({"peer_spiffe_id": [b"spiffe://strata/service/quality"]}, Peer("service", "quality")),
        (
            {"x509_subject_alternative_name": [b"localhost", b"spiffe://strata/client/crowd-7"]},
            Peer("client", "crowd-7"),
        ),
        ({"transport_security_type": [b"insecure"]}, Peer("none", "")),
        ({"peer_spiffe_id": [b"spiffe://other/service/gateway"]}, Peer("none", "")),
        ({"peer_spiffe_id": [b"spiffe://strata/admin/root"]}, Peer("none", "")),
        ({"peer_spiffe_id": [b"spiffe://strata/service/Gateway"]}, Peer("none", "")),
        ({"peer_spiffe_id": [b"spiffe://strata/service/gateway/x"]}, Peer("none", "")),
        ({"peer_spiffe_id": [b"spiffe://strata/service/"]}, Peer("none", "")),
        (
            {
                "x509_subject_alternative_name": [
                    b"spiffe://strata/service/gateway",
                    b"spiffe://strata/client/cli",
                ]
            },
            Peer("none", ""),
        ),
    ],
)
def test_only_a_strata_identity_names_a_peer(auth, peer) -> None:
    assert peer_of(Context(auth)) == peer  # type: ignore[arg-type]


# -- load_tls_config --------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["STRATA_TLS_CERT", "STRATA_TLS_KEY", "STRATA_TLS_CA"])
def test_mutual_tls_needs_each_file(pki, missing) -> None:
    env = {k: v for k, v in pki["gateway"].environ().items() if k != missing}
    with pytest.raises(ConfigError) as err:
        load_tls_config(env)
    assert err.value.variable == missing
    assert "is not set" in str(err.value) and "strata up" in str(err.value)
    assert "STRATA_TLS_MODE=plaintext" in str(err.value)


def test_mutual_tls_is_the_default() -> None:
    with pytest.raises(ConfigError) as err:
        load_tls_config({})
    assert err.value.variable == "STRATA_TLS_CERT"


def test_a_missing_file_is_named(tmp_path, pki) -> None:
    env = {**pki["gateway"].environ(), "STRATA_TLS_CA": str(tmp_path / "nowhere.crt")}
    with pytest.raises(ConfigError) as err:
        load_tls_config(env)
    assert err.value.variable == "STRATA_TLS_CA" and "does not exist" in str(err.value)


def test_a_file_that_is_not_pem_is_named(tmp_path, pki) -> None:
    (tmp_path / "junk").write_text("not a certificate")
    with pytest.raises(ConfigError) as err:
        load_tls_config({**pki["gateway"].environ(), "STRATA_TLS_CERT": str(tmp_path / "junk")})
    assert err.value.variable == "STRATA_TLS_CERT" and "no PEM certificate" in str(err.value)


def test_an_expired_certificate_is_named(tmp_path, pki) -> None:
    ca = LocalCA.load_or_create(pki["gateway"].ca.parent)
    now = datetime.now(UTC)
    pair = ca.issue(
        "service",
        "gateway",
        not_before=now - timedelta(days=90),
        not_after=now - timedelta(hours=1),
    )
    expired = write_pair(tmp_path, "gateway", pair, ca.ca_path)
    with pytest.raises(ConfigError) as err:
        load_tls_config(expired.environ())
    assert err.value.variable == "STRATA_TLS_CERT" and "expired" in str(err.value)


def test_a_key_of_another_certificate_is_named(pki) -> None:
    env = {**pki["gateway"].environ(), "STRATA_TLS_KEY": str(pki["sampler"].key)}
    with pytest.raises(ConfigError) as err:
        load_tls_config(env)
    assert err.value.variable == "STRATA_TLS_KEY" and "not the key" in str(err.value)


def test_a_ca_that_did_not_sign_the_certificate_is_named(tmp_path, pki) -> None:
    other = LocalCA.load_or_create(tmp_path / "other")
    env = {**pki["gateway"].environ(), "STRATA_TLS_CA": str(other.ca_path)}
    with pytest.raises(ConfigError) as err:
        load_tls_config(env)
    assert err.value.variable == "STRATA_TLS_CA"


def test_valid_files_load(pki) -> None:
    assert load_tls_config(pki["gateway"].environ()) == pki["gateway"].config()


def test_plaintext_needs_no_files() -> None:
    cfg = load_tls_config({"STRATA_TLS_MODE": "plaintext", "STRATA_TLS_CERT": "/nowhere"})
    assert not cfg.enabled
    assert server_credentials(cfg) is None


# -- the local CA -----------------------------------------------------------------------


def test_an_issued_certificate_is_what_a_peer_expects(tmp_path) -> None:
    ca = LocalCA.load_or_create(tmp_path / "tls")
    cert_pem, _key = ca.issue("service", "gateway", ["strata-gateway", "10.0.0.7"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://strata/service/gateway"
    ]
    assert names.get_values_for_type(x509.DNSName) == ["strata-gateway"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=89) < lifetime <= timedelta(days=90)
    with pytest.raises(ValueError):
        ca.issue("admin", "gateway")


def test_ensure_keeps_a_good_pair_and_reissues_a_stale_one(tmp_path) -> None:
    folder = tmp_path / "tls"
    ca = LocalCA.load_or_create(folder)
    first = ca.ensure("service", "gateway")
    kept = first.cert.read_bytes()
    assert ca.ensure("service", "gateway").cert.read_bytes() == kept
    assert LocalCA.load_or_create(folder).ensure("service", "gateway").cert.read_bytes() == kept

    soon = datetime.now(UTC) + timedelta(days=7)
    write_pair(folder, "gateway", ca.issue("service", "gateway", not_after=soon), ca.ca_path)
    renewed = ca.ensure("service", "gateway").cert.read_bytes()
    assert x509.load_pem_x509_certificate(renewed).not_valid_after_utc > soon + timedelta(days=30)

    wider = ca.ensure("service", "gateway", ["localhost", "127.0.0.1", "::1"])
    assert wider.cert.read_bytes() != renewed
    assert load_tls_config(wider.environ()).enabled


def test_a_new_ca_reissues_every_certificate(tmp_path) -> None:
    folder = tmp_path / "tls"
    before = ensure_local_pki(folder, ["gateway"])
    kept = before["gateway"].cert.read_bytes()
    (folder / "ca.key").unlink()
    after = ensure_local_pki(folder, ["gateway"])
    assert after["gateway"].cert.read_bytes() != kept
    assert load_tls_config(after["gateway"].environ()).enabled


def test_private_files_are_for_the_owner_only(tmp_path) -> None:
    folder = tmp_path / "tls"
    files = ensure_local_pki(folder, ["sampler", "gateway"])
    assert set(files) == {"sampler", "gateway", "cli"}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert {p.name for p in folder.iterdir()} == {
        f"{name}.{ext}" for name in ("ca", "sampler", "gateway", "cli") for ext in ("crt", "key")
    }
