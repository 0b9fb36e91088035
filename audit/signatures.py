"""21 CFR Part 11 electronic signatures, as a service other apps call (reads, QC decisions).

A signature re-authenticates the signer with their password at the moment of signing (11.200(a)(1)),
records the printed name, the UTC date and time and the meaning of the signature (11.50), and is linked
to the exact content signed by its sha256 (11.70): if the record changes afterwards, ``signature_verify``
says so and every page that shows the signature shows it as no longer matching.

``content`` is the record as the caller signs it: bytes as they are, or a dict, serialised canonically
(sorted keys, compact, UTF-8) so the same record always hashes the same way. Callers pass the same
content shape to ``signature_verify`` that they signed.
"""

import hashlib
import json
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from .context import request_ip
from .exceptions import SignatureError
from .models import ElectronicSignature
from .services import audit_record


def content_sha256(content: bytes | dict) -> str:
    """The sha256 of the exact content signed: bytes as given, a dict as canonical JSON."""
    if isinstance(content, dict):
        content = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                             default=str).encode()
    if not isinstance(content, bytes | bytearray):
        raise TypeError("a signature signs bytes or a dict")
    return hashlib.sha256(content).hexdigest()


def _printed_name(user) -> str:
    return (user.get_full_name() or "").strip() or user.get_username()


def _request_for(request) -> HttpRequest:
    # the lockout backend (django-axes) needs a request; a service call outside one gets a bare one
    if request is not None:
        return request
    bare = HttpRequest()
    bare.META["REMOTE_ADDR"] = request_ip.get() or "127.0.0.1"
    return bare


def signature_sign(*, user, password: str, meaning: str, record_type: str, record_id, content: bytes | dict,
                   trial_id: int | None = None, subject_id: int | None = None, site_id: int | None = None,
                   request=None) -> ElectronicSignature:
    """Sign a record: re-authenticate ``user`` with ``password``, then store the signature and its event.

    Raises SignatureError (and records ``audit.signature_failed``) when the password is wrong or the
    account is locked or inactive. Failed attempts count towards the sign-in lockout, like sign-ins.
    """
    meaning = (meaning or "").strip()
    if not meaning:
        raise SignatureError("a signature needs its meaning, e.g. 'Reviewed and approved'")
    digest = content_sha256(content)
    authenticated = authenticate(_request_for(request), username=user.get_username(), password=password)
    if authenticated is None or authenticated.pk != user.pk:
        with transaction.atomic():
            audit_record(actor=user, action="audit.signature_failed", target=(record_type, record_id, meaning),
                         trial_id=trial_id, subject_id=subject_id, site_id=site_id,
                         details={"meaning": meaning, "record_type": record_type, "record_id": str(record_id)})
        raise SignatureError("the password did not match: the record was not signed")
    with transaction.atomic():
        signed_at = timezone.now()
        printed = _printed_name(user)
        event = audit_record(actor=user, action="audit.signature_signed", target=(record_type, record_id, meaning),
                             trial_id=trial_id, subject_id=subject_id, site_id=site_id,
                             details={"printed_name": printed, "meaning": meaning, "record_type": record_type,
                                      "record_id": str(record_id), "content_sha256": digest,
                                      "signed_at": signed_at.isoformat()})
        return ElectronicSignature.objects.create(
            signer=user, signer_username=user.get_username(), printed_name=printed, meaning=meaning,
            record_type=record_type, record_id=str(record_id), content_sha256=digest, signed_at=signed_at,
            audit_event=event)


@dataclass(frozen=True)
class SignatureStatus:
    signature: ElectronicSignature
    valid: bool  # the record's content now still hashes to what was signed

    @property
    def label(self) -> str:
        return "valid" if self.valid else "INVALID: the record changed after it was signed"


def signature_verify(*, signature: ElectronicSignature, content: bytes | dict) -> SignatureStatus:
    """Recompute the content hash and compare it with the signed one."""
    return SignatureStatus(signature=signature, valid=content_sha256(content) == signature.content_sha256)


def signature_list_for_record(*, record_type: str, record_id, content: bytes | dict | None = None
                              ) -> list[SignatureStatus]:
    """Every signature on one record, oldest first, each checked against ``content`` when given
    (without content the status cannot be known and is reported as not valid)."""
    digest = content_sha256(content) if content is not None else None
    return [SignatureStatus(signature=s, valid=digest is not None and s.content_sha256 == digest)
            for s in ElectronicSignature.objects.filter(record_type=record_type, record_id=str(record_id))]
