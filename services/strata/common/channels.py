"""Client channels: metadata every call carries, and channels that follow a renewed
certificate."""

from __future__ import annotations

import threading
import time
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


class RenewingChannel(grpc.Channel):
    """A channel that reopens itself when its client certificate is renewed.

    A gRPC channel keeps the certificate it was opened with, so a long-lived process
    would present an expired one after cert-manager renews its files. This one checks
    them (at most every `check_s`) and sends new calls over a fresh channel once they
    change; the old one is closed after `grace_s`, when its calls are done.
    """

    def __init__(
        self,
        open_channel: Callable[[], grpc.Channel],
        stamp: Callable[[], object],
        *,
        check_s: float = 30.0,
        grace_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open = open_channel
        self._stamp = stamp
        self._check_s = check_s
        self._grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._channel = open_channel()
        self._seen = stamp()
        self._checked = clock()
        self._retired: list[tuple[float, grpc.Channel]] = []
        self.renewals = 0

    def current(self) -> grpc.Channel:
        """The channel new calls go over, reopened if the certificate changed."""
        now = self._clock()
        with self._lock:
            if now - self._checked >= self._check_s:
                self._checked = now
                try:
                    stamp = self._stamp()
                except OSError:
                    stamp = self._seen  # mid-rotation: keep the channel open
                if stamp != self._seen:
                    self._retired.append((now, self._channel))
                    self._channel = self._open()
                    self._seen = stamp
                    self.renewals += 1
                while self._retired and now - self._retired[0][0] >= self._grace_s:
                    self._retired.pop(0)[1].close()
            return self._channel

    def _proxy(self, kind: str, method: str, kwargs: dict[str, Any]) -> Any:
        return _RenewingCallable(self, kind, method, kwargs)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._proxy("unary_unary", method, _named(args, kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._proxy("unary_stream", method, _named(args, kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._proxy("stream_unary", method, _named(args, kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._proxy("stream_stream", method, _named(args, kwargs))

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self.current().subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self.current().unsubscribe(callback)

    def close(self) -> None:
        with self._lock:
            for _, old in self._retired:
                old.close()
            self._retired.clear()
            self._channel.close()

    def __enter__(self) -> RenewingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _named(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = ("request_serializer", "response_deserializer")
    return {**dict(zip(names, args, strict=False)), **kwargs}


class _RenewingCallable:
    """A stub's method: each call goes over the channel's current connection."""

    def __init__(self, owner: RenewingChannel, kind: str, method: str, kwargs: dict[str, Any]):
        self.owner = owner
        self.kind = kind
        self.method = method
        self.kwargs = kwargs
        self._made: tuple[grpc.Channel, Any] | None = None

    def _callable(self) -> Any:
        channel = self.owner.current()
        made = self._made
        if made is None or made[0] is not channel:
            made = (channel, getattr(channel, self.kind)(self.method, **self.kwargs))
            self._made = made
        return made[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable().future(*args, **kwargs)
