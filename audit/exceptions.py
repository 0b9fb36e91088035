class AuditError(Exception):
    """Base class for audit failures."""


class AuditOutsideTransaction(AuditError):
    """audit_record was called outside a transaction: the event could commit without its change."""


class ReasonRequired(AuditError):
    """A correction to regulated data was attempted without a reason."""


class SignatureError(AuditError):
    """An electronic signature could not be made (re-authentication failed, no meaning given, ...)."""
