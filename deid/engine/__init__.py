"""PS3.15 Annex E de-identification of one pydicom Dataset: pure functions, no ORM, no I/O but the table file.

Table E.1-1 is data (``deid/data/ps315_table_e11.json``, edition ``TABLE_EDITION``); each row and the
trial's options give one of six actions (``row_action``), applied at every nesting level. Attributes
not in the table are kept, private ones aside.

Choices the standard leaves to the implementation:

- Combined actions take the alternative that removes least, since the engine has no IOD tables to
  tell Type 1 from Type 3: X/Z -> Z, X/D -> D, Z/D -> D, X/Z/D -> D, X/Z/U* -> U. A zero-length or
  dummy value is valid for every attribute type, so the result never loses an attribute its IOD
  requires.
- On a sequence, Z leaves no items and U keeps the items, mapping the UIDs inside. D keeps the items
  and their structure, applies the table inside, and replaces every other text value in them (codes
  included) with the dummy: a "dummy sequence" that is valid whatever the sequence's type. So every
  combination on a sequence (X/Z, X/D, X/Z/D) is D, since a Type 2 sequence may be empty but a
  Type 1 or 3 one must hold an item. Under the Basic Profile an SR's Content Sequence keeps its tree
  with dummy text; Clean Structured Content keeps the text, scrubbed.
- When two options in force disagree on a row, C wins over K: keeping a device's real calibration
  date next to shifted acquisition dates would undo the shift.
- C (clean): under Retain Longitudinal Modified Dates, DA and DT values move by the subject's offset
  and TM values stay; AE titles under Retain Device Identity become keyed pseudonyms; text under Clean
  Descriptors or Retain Patient Characteristics keeps its wording, with every identifying string the
  instance carries (``identifying_strings``: patient names and IDs, birth date, accession number,
  staff names) replaced by ``*``; a sequence under a C is kept, the table applied inside it and its
  free text scrubbed the same way. Overlay and curve data under Clean Graphics are kept, with the
  Clean Pixel Data boxes blanked in overlays too. A value that cannot be cleaned (an unparsable date,
  a binary timestamp) takes the Basic Profile action instead.
- D writes a fixed dummy per VR (``ANONYMIZED``, ``19000101``, 0, ...); UIDs under D or U are mapped.
  PatientName and PatientID, wherever they occur, become the subject code.
- Removing Overlay Data (60xx,3000) removes its whole overlay group: an Overlay Plane without its data
  would break the IOD. Group lengths (gggg,0000) outside the file meta are removed: they no longer match.
- Private attributes are removed unless Retain Safe Private is on and (private creator, element offset)
  is on the trial's allowlist; a private creator stays only while its block keeps an element.

Entry points: ``deidentify`` + ``verify`` work on a pydicom Dataset; ``deidentify_bytes`` takes a Part 10
file as bytes and returns the de-identified file, its Report and the verification problems in one
call, parsing only the elements the table changes and copying the rest (Pixel Data included) byte for
byte: the same output, several times cheaper (``bench/deid.py``). ``pixel_review_reasons`` and
``find_text`` (OCR) serve the files routed to pixel cleaning.
"""

from .apply import Keys, Profile, Report, deidentify, method_codes
from .check import verify
from .errors import DeidError, PixelDataError
from .ocr import OcrError, TextBox, find_text, pixel_review_reasons
from .pixels import installed_decoders
from .pseudonyms import ae_pseudonym, identifying_strings, map_uid, shift_date
from .stream import Output, deidentify_bytes
from .table import ACTIONS, OPTIONS, PROFILE_CODE, TABLE_EDITION, Row, row_action, table

__all__ = [
    "ACTIONS", "OPTIONS", "PROFILE_CODE", "TABLE_EDITION", "DeidError", "Keys", "OcrError", "Output",
    "PixelDataError", "Profile", "Report", "Row", "TextBox", "ae_pseudonym", "deidentify", "deidentify_bytes",
    "find_text", "identifying_strings", "installed_decoders", "map_uid", "method_codes", "pixel_review_reasons",
    "row_action", "shift_date", "table", "verify",
]
