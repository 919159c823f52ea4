"""Client channels: fixed call metadata, and a channel that follows a renewed certificate
(real handshakes on 127.0.0.1)."""

from __future__ import annotations

import os
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from strata.common.channels import RenewingChannel, with_metadata
from strata.common.tls import (
    LocalCA,
    TlsConfig,
    files_stamp,
    open_channel,
    peer_of,
    server_credentials,
)


class Recorder(health.HealthServicer):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def Check(self, request, context):  # type: ignore[no-untyped-def]
        token = dict(context.invocation_metadata()).get("authorization", "")
        self.seen.append((peer_of(context).name, token))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def test_a_renewing_channel_presents_the_renewed_certificate(tmp_path: Path) -> None:
    ca = LocalCA.load_or_create(tmp_path / "ca")
    server_files = ca.ensure("service", "gateway")
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(recorder, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(server_files.config()))
    server.start()
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"

    def install(name: str) -> None:
        pem, private = ca.issue("service", name)
        for path, data in ((cert, pem), (key, private)):
            fresh = path.with_suffix(".new")
            fresh.write_bytes(data)
            os.replace(fresh, path)  # as a renewal swaps the files in

    install("quality")
    tls = TlsConfig("mutual", str(cert), str(key), str(ca.ca_path))
    channel = RenewingChannel(
        lambda: open_channel(f"localhost:{port}", tls), lambda: files_stamp(tls), check_s=0.0
    )
    stub = health_pb2_grpc.HealthStub(with_metadata(channel, [("authorization", "Bearer t")]))
    try:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        install("training")
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        stub.Check.future(health_pb2.HealthCheckRequest(), timeout=5).result()
    finally:
        channel.close()
        server.stop(0)
    assert recorder.seen == [
        ("quality", "Bearer t"),
        ("training", "Bearer t"),
        ("training", "Bearer t"),
    ]
    assert channel.renewals == 1
