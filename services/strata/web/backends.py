"""The gRPC services the web calls, always as the signed-in person.

Every call carries the person's session token (their identity; the web holds no
superuser) and the browser's address (x-forwarded-for, which the services believe
only from the web's own identity), and a gRPC refusal becomes the HTTP status a
browser understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from strata.common.authz import FORWARDED_FOR
from strata.v1 import (
    gateway_pb2_grpc,
    inference_pb2_grpc,
    quality_pb2_grpc,
    sampler_pb2_grpc,
    training_pb2_grpc,
)

# gRPC status -> (HTTP status, what the page says when the service gave no message).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

CALL_TIMEOUT_S = 10.0


class BackendError(Exception):
    """A service refused or failed a call; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def http_error(exc: grpc.RpcError) -> BackendError:
    """The HTTP answer to a failed gRPC call."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or "the service failed"
    status = HTTP_STATUS.get(code, 502)
    return BackendError(status, details, code.name if code else "UNKNOWN")


@dataclass(frozen=True)
class Person:
    """Who a request is from: their session token and where their browser is."""

    token: str
    source: str

    def metadata(self) -> Sequence[tuple[str, str]]:
        return (("authorization", f"Bearer {self.token}"), (FORWARDED_FOR, self.source))


@dataclass(frozen=True)
class Anonymous:
    """A request with no session yet (signing in): only where the browser is."""

    source: str

    def metadata(self) -> Sequence[tuple[str, str]]:
        return ((FORWARDED_FOR, self.source),)


class Backends:
    """Stubs of every service, on channels that prove this process is the web service."""

    def __init__(self, channels: dict[str, grpc.Channel]) -> None:
        self.channels = channels
        self.gateway = gateway_pb2_grpc.AnnotationGatewayStub(channels["gateway"])
        self.quality = quality_pb2_grpc.QualityStub(channels["quality"])
        self.sampler = sampler_pb2_grpc.SamplerStub(channels["sampler"])
        self.inference = inference_pb2_grpc.InferenceStub(channels["inference"])
        self.training = training_pb2_grpc.TrainingStub(channels["training"])

    def call(self, method: Any, request: Any, who: Person | Anonymous) -> Any:
        """`method(request)` as `who`; raises BackendError."""
        try:
            return method(request, metadata=who.metadata(), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise http_error(exc) from None

    def gather(self, calls: Sequence[tuple[Any, Any]], who: Person | Anonymous) -> list[Any]:
        """Several `(method, request)` calls as `who`, all in flight at once (a page that
        needs five services waits for the slowest, not the sum); raises the first failure."""
        futures = [
            method.future(request, metadata=who.metadata(), timeout=CALL_TIMEOUT_S)
            for method, request in calls
        ]
        try:
            return [f.result() for f in futures]
        except grpc.RpcError as exc:
            for f in futures:
                f.cancel()
            raise http_error(exc) from None

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
