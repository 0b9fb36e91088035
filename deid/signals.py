"""Signals de-identification sends, always after the transaction that recorded the change has committed.

Higher apps (QC) connect receivers that only enqueue their own task; deid imports none of them.

- ``instance_held(sender=DeidRecord, record_id=int)``: verification failed (or the engine refused the file);
  the output is kept out of the archive and the record's ``findings`` say which attributes. QC raises a
  query to the site from it.
- ``study_deidentified(sender=ImagingStudy, study_id=int)``: every instance of the study is de-identified
  and verified; the study is DEIDENTIFIED and ready for automated QC.
"""

from django.dispatch import Signal

instance_held = Signal()
study_deidentified = Signal()
