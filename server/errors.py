"""Errors of the server role."""

from secure_mor.errors import SecureMorError


class ServerError(SecureMorError):
    """Base class of the server's errors."""


class RoutingError(ServerError):
    """Router weights cannot be computed as asked (bad shapes, an unsatisfiable cap, unknown client)."""
