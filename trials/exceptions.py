from rest_framework import status

from config.errors import ConflictError, DomainError


class TrialsError(DomainError):
    """Base class for trial set-up errors a user can act on."""


class MembershipError(TrialsError):
    """A role cannot be granted or revoked as asked."""


class InvalidTransition(ConflictError, TrialsError):
    """The object is not in a state that allows this act."""


class SubmissionBlocked(TrialsError):
    """A site may not submit subject scans for a procedure yet; the message says why."""

    status_code = status.HTTP_403_FORBIDDEN


class NotQualified(SubmissionBlocked):
    pass


class NotTrained(SubmissionBlocked):
    pass


class EnrollmentError(TrialsError):
    """A subject cannot be enrolled as asked."""
