"""Registering services so that hostile bytes reach a handler and get a precise, logged refusal.

gRPC Python answers a request that its deserializer cannot parse with ``INTERNAL: Exception deserializing
request!`` before any handler runs: a vague status that blames the service, and no log line. Services of
secure-mor therefore register their methods with ``tolerant`` deserializers: bytes that are not a valid
message of the method's request type arrive in the handler as an ``Unparsable`` (never ``None``: gRPC
reads ``None`` as a deserialisation failure), and the handler answers ``INVALID_ARGUMENT`` after its
authorisation checks, and logs it. ``register`` refuses a handler table that does not cover exactly the
methods of the service in the ``.proto`` (so a new RPC cannot be served by the generated default).

``excerpt`` bounds a peer-supplied string before it is echoed into a status message or a log line: an
unbounded echo of a 200 kB field made the status itself exceed gRPC's metadata limit, and the caller saw
``RESOURCE_EXHAUSTED: received metadata size exceeds hard limit`` instead of the real refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

MAX_DETAILS = 1024
"""Longest status message (characters) a service sends; gRPC's default metadata limit is 8–16 kB."""


class _Message(Protocol):
    DESCRIPTOR: Any

    @classmethod
    def FromString(cls, data: bytes) -> Any: ...  # noqa: N802 (protobuf's name)


M = TypeVar("M", bound=_Message)


@dataclass(frozen=True)
class Unparsable:
    """Request bytes that are not a valid message of the expected type (what the handler receives)."""

    expected: str
    size: int
    error: str

    def describe(self) -> str:
        """One line for the status message and the log: expected type, size and the parser's error."""
        return f"the request is not a valid {self.expected} protobuf ({self.size} bytes): {self.error}"


def tolerant(message_type: type[M]) -> Callable[[bytes], M | Unparsable]:
    """A request deserializer for ``message_type`` that returns ``Unparsable`` instead of raising."""
    name = str(message_type.DESCRIPTOR.full_name)

    def parse(data: bytes) -> M | Unparsable:
        try:
            message: M = message_type.FromString(data)
        except Exception as error:  # protobuf's DecodeError; a RecursionError on absurdly deep nesting
            return Unparsable(name, len(data), excerpt(str(error) or type(error).__name__, 200, quote=False))
        return message

    return parse


def register(
    server: grpc.Server, service: ServiceDescriptor, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
) -> None:
    """Add ``handlers`` for ``service`` to ``server``; they must cover exactly the service's methods."""
    declared = set(service.methods_by_name)
    if set(handlers) != declared:
        raise ValueError(
            f"{service.full_name}: handlers for {sorted(handlers)}, the .proto declares {sorted(declared)}"
        )
    table = dict(handlers)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, table),))
    server.add_registered_method_handlers(service.full_name, table)


def excerpt(value: str, limit: int = 64, *, quote: bool = True) -> str:
    """``value`` cut to ``limit`` characters (saying how long it was), as ``repr`` unless ``quote=False``."""
    cut = value if len(value) <= limit else value[:limit]
    shown = repr(cut) if quote else cut
    return shown if cut is value else f"{shown}… ({len(value)} characters)"


def bounded(details: str) -> str:
    """A status message cut to ``MAX_DETAILS`` characters."""
    return details if len(details) <= MAX_DETAILS else details[: MAX_DETAILS - 1] + "…"
