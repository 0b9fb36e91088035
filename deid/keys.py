"""The engine's Keys for a trial's subject: the trial's UID key and the subject's keyed, stable date offset.

Both derive from the deployment's PSEUDONYM_KEY through trials.keys.trial_key, so nothing secret is
stored in the database, and the same subject gets the same offset on every upload, at every site.
"""

import hashlib
import hmac

from deid.engine import Keys
from trials.keys import trial_key

# offsets move dates back by one to ten years; intervals between a subject's timepoints are kept
MIN_SHIFT_DAYS, MAX_SHIFT_DAYS = 365, 3650


def date_shift_days(*, key: bytes, subject: str) -> int:
    """The subject's offset in days (negative), stable for the same key and subject code."""
    digest = hmac.new(key, f"date-shift:{subject}".encode(), hashlib.sha256).digest()
    return -(MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1))


def subject_keys(*, trial, subject_code: str) -> Keys:
    """Keys for de-identifying one subject's instances in one trial."""
    return Keys(uid_key=trial_key(trial=trial, purpose="uid"),
                date_shift_days=date_shift_days(key=trial_key(trial=trial, purpose="date-shift"),
                                                subject=subject_code))


def standalone_keys(*, key: bytes, patient_id: str) -> tuple[Keys, str]:
    """Keys and a pseudonymous subject code for the CLI without a trial: both keyed on ``key``.

    The code is ``ANON-`` and 12 hex digits of HMAC(key, Patient ID): the same patient gets the same code
    and offset on every run with the same key file.
    """
    code = "ANON-" + hmac.new(key, b"patient:" + patient_id.strip().encode(), hashlib.sha256).hexdigest()[:12].upper()
    return Keys(uid_key=hashlib.sha256(b"uid:" + key).digest(),
                date_shift_days=date_shift_days(key=key, subject=code)), code
