"""Corelab's own DICOMweb read side (QIDO-RS, WADO-RS) over the archive of de-identified instances.

``selectors`` decides which instances a user may see (every query goes through it), ``dicom`` reads headers,
frames and rendered images from archived files without loading more than one instance, ``views`` speaks
PS3.18. Mounted at ``/dicomweb/`` beside intake's STOW-RS, which shares the ``/studies`` URLs.
"""
