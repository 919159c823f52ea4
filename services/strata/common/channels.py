"""Client channels: call metadata every call of a channel carries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc


class CallMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Adds metadata to every call: fixed pairs, or pairs made fresh for each call."""

    def __init__(self, metadata: Callable[[], Sequence[tuple[str, str]]]) -> None:
        self.metadata = metadata

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), *self.metadata()])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def with_metadata(channel: grpc.Channel, metadata: Sequence[tuple[str, str]]) -> grpc.Channel:
    """`channel`, with `metadata` (a bearer token, say) on every call."""
    fixed = list(metadata)
    return grpc.intercept_channel(channel, CallMetadata(lambda: fixed))
