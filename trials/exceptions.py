class TrialsError(Exception):
    """Base class for trial set-up errors a user can act on."""


class MembershipError(TrialsError):
    """A role cannot be granted or revoked as asked."""
