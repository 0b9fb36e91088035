"""Errors a user can act on, and how the API reports them.

Apps derive their domain errors from DomainError; the DRF exception handler
turns them, and Django's ValidationError, into 4xx answers with a clear message
instead of 500s.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A request that cannot be carried out as asked; the message says why."""

    status_code = status.HTTP_400_BAD_REQUEST


class ConflictError(DomainError):
    """The object is in a state that does not allow this act."""

    status_code = status.HTTP_409_CONFLICT


def api_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DomainError):
        return Response({"detail": str(exc)}, status=exc.status_code)
    return drf_exception_handler(exc, context)
