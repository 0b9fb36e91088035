"""The name readers and adjudicators know a subject by: its reading ID.

A subject code is the trial's pseudonym, but trials usually number subjects by site (``101-0001`` is the first
subject of site 101), so showing it to a reader would reveal the site they are blinded to. Reader-facing pages,
the reads API and the DICOM headers served to readers name the subject by a reading ID instead: ``R-`` and
eight base32 characters of HMAC-SHA256 under the trial's "reading-id" key (trials.keys), over the subject code.
In DICOM, de-identification writes the subject code into PatientID and PatientName; DICOMweb replaces both
with the reading ID in everything it serves to a reader. It is stable (the same subject keeps it at every timepoint and for every reader, so reader A, reader B and the
adjudicator talk of the same ID), needs nothing stored, and cannot be turned back into the subject code without
the deployment's PSEUDONYM_KEY. Trial managers see it beside the subject code on the reader pool page.
"""

import base64
import functools
import hashlib
import hmac

from trials.keys import trial_key
from trials.models import Subject, Trial

PREFIX = "R-"


def _reading_id(key: bytes, code: str) -> str:
    return PREFIX + base64.b32encode(hmac.new(key, code.encode(), hashlib.sha256).digest()[:5]).decode()


def reading_id(*, subject: Subject) -> str:
    return _reading_id(trial_key(trial=subject.trial, purpose="reading-id"), subject.code)


@functools.lru_cache(maxsize=256)
def _key_of_trial(trial_id: int) -> bytes:
    # a trial's key never changes (key_id is not editable), so it is kept for the life of the process
    return trial_key(trial=Trial.objects.only("key_id").get(pk=trial_id), purpose="reading-id")


def reading_id_for_code(*, trial_id: int, code: str) -> str:
    """The reading ID of the trial's subject ``code`` (e.g. the PatientID de-identification wrote)."""
    return _reading_id(_key_of_trial(trial_id), code)

