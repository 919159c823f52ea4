"""Mutual TLS on every gRPC hop, and the identity a peer's certificate carries.

Every process presents a certificate from the Strata CA: a service its own (URI SAN
spiffe://strata/service/<name>), a person's tool a client certificate
(spiffe://strata/client/<name>) that grants nothing by itself; people authenticate with
bearer tokens on top. `LocalCA` makes the certificates of `strata up` and of tests; in
Kubernetes cert-manager does (docs/tls.md).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strata.common.config import ConfigError, load, parse_choice, setting

SERVICE_URI_PREFIX = "spiffe://strata/service/"
CLIENT_URI_PREFIX = "spiffe://strata/client/"
_PREFIXES = {"service": SERVICE_URI_PREFIX, "client": CLIENT_URI_PREFIX}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LOCAL_HOSTS = ("localhost", "127.0.0.1")

LEAF_LIFETIME, LEAF_RENEW_BEFORE = timedelta(days=90), timedelta(days=14)
CA_LIFETIME, CA_RENEW_BEFORE = timedelta(days=3650), timedelta(days=30)
# Certificates start a little in the past, so that a peer whose clock lags accepts them.
CLOCK_SKEW = timedelta(minutes=5)

_HOW_TO_FIX = (
    "run `strata up`, which makes .strata/tls, or set STRATA_TLS_MODE=plaintext to run without TLS"
)
T = TypeVar("T")
# x509.KeyUsage's flags; each certificate turns on only those it needs.
_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


@dataclass(frozen=True)
class TlsConfig:
    """How this process speaks gRPC: mutual TLS (default) or plaintext, only when configured."""

    mode: str = setting(
        "STRATA_TLS_MODE",
        parse_choice("mutual", "plaintext"),
        "mutual",
        "mutual: every gRPC hop is mutual TLS; plaintext: no TLS, only when set explicitly",
    )
    cert: str = setting("STRATA_TLS_CERT", str, "", "PEM certificate (chain) of this process")
    key: str = setting("STRATA_TLS_KEY", str, "", "its PEM private key")
    ca: str = setting("STRATA_TLS_CA", str, "", "PEM CA bundle that signs every Strata peer")

    @property
    def enabled(self) -> bool:
        """Whether gRPC uses mutual TLS."""
        return self.mode == "mutual"


def _parse_file(variable: str, path: str, what: str, parse: Callable[[bytes], T]) -> T:
    if not path:
        raise ConfigError(variable, "is not set", _HOW_TO_FIX)
    try:
        return parse(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(variable, f"names {path}, which does not exist", _HOW_TO_FIX) from None
    except OSError as exc:
        raise ConfigError(variable, f"names {path}, which cannot be read: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise ConfigError(variable, f"names {path}, which holds no {what}", _HOW_TO_FIX) from None


def load_tls_config(environ: Mapping[str, str]) -> TlsConfig:
    """The `TlsConfig` in `environ`; in mutual mode its files must exist and fit together."""
    cfg = load(TlsConfig, environ)
    if not cfg.enabled:
        return cfg
    certificates = x509.load_pem_x509_certificates
    chain = _parse_file("STRATA_TLS_CERT", cfg.cert, "PEM certificate", certificates)
    key = _parse_file("STRATA_TLS_KEY", cfg.key, "unencrypted PEM private key", _private_key)
    cas = _parse_file("STRATA_TLS_CA", cfg.ca, "PEM certificate", certificates)
    leaf, now = chain[0], datetime.now(UTC)
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not start <= now < end:
        raise ConfigError(
            "STRATA_TLS_CERT",
            f"({cfg.cert}) is valid from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, "
            f"{'expired' if now >= end else 'not yet valid'}",
            "issue a new one: `strata up` renews .strata/tls, cert-manager renews in Kubernetes",
        )
    if _public_der(key) != _public_der(leaf):
        raise ConfigError(
            "STRATA_TLS_KEY",
            f"({cfg.key}) is not the key of the certificate in STRATA_TLS_CERT ({cfg.cert})",
            "point both at the files of one pair",
        )
    if not any(_signed_by(cert, ca) for cert in chain for ca in cas):
        raise ConfigError(
            "STRATA_TLS_CA",
            f"({cfg.ca}) holds no CA that signed the certificate in STRATA_TLS_CERT ({cfg.cert})",
            "use the certificate and the CA bundle of one Strata CA",
        )
    return cfg


@dataclass(frozen=True)
class Peer:
    """Who called, by the Strata identity of its verified client certificate."""

    kind: str  # "service" | "client" | "none"
    name: str  # e.g. "gateway", "cli"; "" for none


NO_PEER = Peer("none", "")


def _peer_of_uri(uri: str) -> Peer:
    for kind, prefix in _PREFIXES.items():
        name = uri.removeprefix(prefix)
        if name != uri and _NAME.match(name):
            return Peer(kind, name)
    return NO_PEER


def peer_of(context: grpc.ServicerContext) -> Peer:
    """The Strata identity of the caller's certificate; Peer("none", "") if it has none."""
    auth = context.auth_context()
    uris = auth.get("peer_spiffe_id") or auth.get("x509_subject_alternative_name") or []
    peers = {_peer_of_uri(u.decode(errors="replace")) for u in uris} - {NO_PEER}
    # A certificate that names two Strata identities names none.
    return peers.pop() if len(peers) == 1 else NO_PEER


def _read(cfg: TlsConfig) -> tuple[bytes, bytes, bytes]:
    return Path(cfg.cert).read_bytes(), Path(cfg.key).read_bytes(), Path(cfg.ca).read_bytes()


class _ReloadWhenChanged:
    """gRPC asks before each handshake; cert-manager rotates the files in place."""

    def __init__(self, cfg: TlsConfig) -> None:
        self.cfg = cfg
        self.seen = self._stamp()

    def _stamp(self) -> list[tuple[int, int]]:
        return files_stamp(self.cfg)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamp = self._stamp()
            if stamp == self.seen:
                return None
            cert, key, ca = _read(self.cfg)
        except OSError:
            return None  # mid-rotation: keep the pair already loaded
        self.seen = stamp
        return grpc.ssl_server_certificate_configuration([(key, cert)], ca)


def server_credentials(cfg: TlsConfig) -> grpc.ServerCredentials | None:
    """Credentials for a port that requires a client certificate; None when plaintext."""
    if not cfg.enabled:
        return None
    cert, key, ca = _read(cfg)
    return grpc.dynamic_ssl_server_credentials(
        grpc.ssl_server_certificate_configuration([(key, cert)], ca),
        _ReloadWhenChanged(cfg),
        require_client_authentication=True,
    )


def channel_credentials(cfg: TlsConfig) -> grpc.ChannelCredentials | None:
    """Credentials that present this process's certificate to peers; None when plaintext."""
    if not cfg.enabled:
        return None
    cert, key, ca = _read(cfg)
    return grpc.ssl_channel_credentials(ca, private_key=key, certificate_chain=cert)


def files_stamp(cfg: TlsConfig) -> list[tuple[int, int]]:
    """What changes when the certificate, key or CA files are replaced."""
    stats = [os.stat(p) for p in (cfg.cert, cfg.key, cfg.ca)]
    return [(s.st_ino, s.st_mtime_ns) for s in stats]


def open_channel(
    target: str, cfg: TlsConfig, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A channel to `target`: mutual TLS, or plaintext when so configured."""
    credentials = channel_credentials(cfg)
    if credentials is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, credentials, options=list(options))


# -- a local certificate authority ----------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its key and the CA bundle, as files."""

    cert: Path
    key: Path
    ca: Path

    def config(self) -> TlsConfig:
        """A mutual-TLS config that uses these files."""
        return TlsConfig("mutual", str(self.cert), str(self.key), str(self.ca))

    def environ(self) -> dict[str, str]:
        """The STRATA_TLS_* variables that make a process use these files."""
        cfg = self.config()
        return {
            "STRATA_TLS_MODE": cfg.mode,
            "STRATA_TLS_CERT": cfg.cert,
            "STRATA_TLS_KEY": cfg.key,
            "STRATA_TLS_CA": cfg.ca,
        }


def _private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("Strata keys are ECDSA")
    return key


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    pkcs8, no_password = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, pkcs8, no_password)


def _public_der(holder: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return holder.public_key().public_bytes(serialization.Encoding.DER, spki)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Any] | None:
    """The certificate and key in these files; None if either is missing or they differ."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = _private_key(key_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None
    return (cert, key) if _public_der(key) == _public_der(cert) else None


def _write_private(path: Path, data: bytes) -> None:
    # Written aside and renamed, so that a reader never sees half a file.
    partial = path.with_name(path.name + ".partial")
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
    partial.chmod(0o600)
    partial.replace(path)


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_usage(*allowed: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{usage: usage in allowed for usage in _KEY_USAGES})


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
    )


class LocalCA:
    """A certificate authority kept in a folder, for the embedded stack and for tests."""

    def __init__(self, folder: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.folder, self.cert, self.key = folder, cert, key

    @classmethod
    def load_or_create(cls, folder: Path, name: str = "Strata local CA") -> LocalCA:
        """The CA in folder/ca.crt and ca.key; a new one if missing or expiring within 30 days."""
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        pair = _load_pair(folder / "ca.crt", folder / "ca.key")
        now = datetime.now(UTC)
        if pair is not None and pair[0].not_valid_after_utc - now > CA_RENEW_BEFORE:
            return cls(folder, *pair)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        sign_certificates = _key_usage("digital_signature", "key_cert_sign", "crl_sign")
        cert = (
            _builder(name, subject, key)
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(sign_certificates, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(folder / "ca.key", _private_pem(key))
        _write_private(folder / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
        return cls(folder, cert, key)

    @property
    def ca_path(self) -> Path:
        """The CA's certificate: the bundle every Strata peer trusts."""
        return self.folder / "ca.crt"

    def issue(
        self,
        kind: str,
        name: str,
        hosts: Sequence[str] = LOCAL_HOSTS,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """A new (cert_pem, key_pem) for spiffe://strata/<kind>/<name>, valid for `hosts`."""
        if kind not in _PREFIXES:
            raise ValueError(f"kind must be service or client, got {kind!r}")
        if not _NAME.match(name):
            raise ValueError(f"name must match {_NAME.pattern}, got {name!r}")
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        uri = x509.UniformResourceIdentifier(_PREFIXES[kind] + name)
        sign_only = _key_usage("digital_signature")
        both_ends = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            _builder(name, self.cert.subject, key)
            .not_valid_before(not_before or now - CLOCK_SKEW)
            .not_valid_after(not_after or now + LEAF_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(sign_only, critical=True)
            .add_extension(x509.ExtendedKeyUsage(both_ends), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([uri, *map(_host_name, hosts)]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _private_pem(key)

    def ensure(self, kind: str, name: str, hosts: Sequence[str] = LOCAL_HOSTS) -> TlsFiles:
        """folder/<name>.crt and .key (0600): kept while still good for `hosts`, else re-issued."""
        if name == "ca":
            raise ValueError("'ca' names the CA's own files; choose another name")
        files = TlsFiles(self.folder / f"{name}.crt", self.folder / f"{name}.key", self.ca_path)
        if not self._still_good(files, kind, name, hosts):
            cert_pem, key_pem = self.issue(kind, name, hosts)
            _write_private(files.key, key_pem)
            _write_private(files.cert, cert_pem)
        return files

    def _still_good(self, files: TlsFiles, kind: str, name: str, hosts: Sequence[str]) -> bool:
        pair = _load_pair(files.cert, files.key)
        if pair is None:
            return False
        cert = pair[0]
        try:
            names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            return False
        uris = {n for n in names if isinstance(n, x509.UniformResourceIdentifier)}
        return (
            cert.not_valid_after_utc - datetime.now(UTC) > LEAF_RENEW_BEFORE
            and _signed_by(cert, self.cert)
            and uris == {x509.UniformResourceIdentifier(_PREFIXES.get(kind, "") + name)}
            and {_host_name(h) for h in hosts} <= names
        )


def ensure_local_pki(
    folder: Path,
    services: Sequence[str],
    hosts: Sequence[str] = LOCAL_HOSTS,
    clients: Sequence[str] = ("cli",),
) -> dict[str, TlsFiles]:
    """One CA in `folder`, a certificate per service and per client; name -> its files."""
    if set(services) & set(clients):
        raise ValueError(f"a service and a client share a name: {set(services) & set(clients)}")
    ca = LocalCA.load_or_create(folder)
    files = {name: ca.ensure("service", name, hosts) for name in services}
    return files | {name: ca.ensure("client", name, hosts) for name in clients}
