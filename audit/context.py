"""Per-request context (client IP) for audit events, set by middleware."""

from contextvars import ContextVar

request_ip: ContextVar[str | None] = ContextVar("audit_request_ip", default=None)
