"""The de-identification profile form (a new version, or unsaved settings to preview) and the preview upload.

The allowlist and pixel regions are typed as rows of comma-separated values (CSV quoting allowed), the
way a trial manager copies them from a vendor's conformance statement:

- allowlist: ``private creator, element`` (element offset in hex, 00-FF: ``SIEMENS CSA HEADER, 0x10``)
- regions: ``manufacturer, model, rows, columns, x0, y0, x1, y1`` (blank manufacturer / model / size match
  any; the box's top-left and bottom-right corners in pixels). Rows for the same device and size become
  one region with several boxes; the model stores each box as [x, y, width, height].
"""

import csv

from django import forms
from django.core.exceptions import ValidationError

from deid.engine import OPTIONS, Profile

from .models import DeidProfile

PREVIEW_MAX_BYTES = 32 * 1024 * 1024  # a sample file, not a study
PREVIEW_SUBJECT_CODE = "PREVIEW-0001"


def _rows(text: str) -> list[tuple[int, list[str]]]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return [(n, [cell.strip() for cell in next(csv.reader([line], skipinitialspace=True))]) for n, line in lines]


def allowlist_text(safe_private: list) -> str:
    return "\n".join(f"{creator}, 0x{int(element):02X}" for creator, element in safe_private)


def regions_text(regions: list[dict]) -> str:
    lines = []
    for region in regions:
        for x, y, width, height in region.get("boxes", []):
            cells = [region.get("manufacturer") or "", region.get("model") or "",
                     "" if region.get("rows") is None else str(region["rows"]),
                     "" if region.get("columns") is None else str(region["columns"]),
                     str(x), str(y), str(x + width), str(y + height)]
            lines.append(", ".join(f'"{c}"' if "," in c else c for c in cells))
    return "\n".join(lines)


def option_choices() -> list[tuple[str, str]]:
    """Option name -> its PS3.15 name (CID 7050 meaning), in the table's order."""
    return [(name, f"{meaning} ({code})") for name, (code, meaning) in OPTIONS.items()]


class ProfileForm(forms.Form):
    """Everything a profile version holds; ``require_note`` off for a preview of unsaved settings."""

    use_required_attribute = False  # one HTML form serves both Save (needs a note) and Preview (a file)

    options = forms.MultipleChoiceField(choices=option_choices, required=False,
                                        widget=forms.CheckboxSelectMultiple, label="Options")
    safe_private = forms.CharField(
        required=False, label="Safe private allowlist", widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "class": "code"}),
        help_text="One per line: private creator, element (hex 00-FF). Kept only under Retain Safe Private.")
    pixel_regions = forms.CharField(
        required=False, label="Pixel-clean regions", widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "class": "code"}),
        help_text="One box per line: manufacturer, model, rows, columns, x0, y0, x1, y1 (blank fields match any "
                  "device or size). Blanked only under Clean Pixel Data.")
    purge_raw_after_days = forms.IntegerField(
        required=False, min_value=0, label="Purge raw files after (days)",
        help_text="Days after a verified de-identification; 0: at the next purge run; empty: keep raw files.")
    ocr_text_review = forms.BooleanField(
        required=False, label="Hold files with burned-in text",
        help_text="Read burned-in annotation, secondary capture, ultrasound and screen-capture files with OCR "
                  "after pixel cleaning; text that remains holds the file for QC review.")
    ocr_min_confidence = forms.IntegerField(
        required=False, min_value=0, max_value=100, label="OCR word confidence (0-100)",
        help_text="From this Tesseract confidence a word counts as text (lower holds more files); empty: as now.")
    note = forms.CharField(required=True, max_length=2000, label="Reason for this version",
                           widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    def __init__(self, *args, require_note: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["note"].required = require_note

    @classmethod
    def initial_from(cls, profile: DeidProfile) -> dict:
        return {"options": list(profile.options), "safe_private": allowlist_text(profile.safe_private),
                "pixel_regions": regions_text(profile.pixel_regions),
                "purge_raw_after_days": profile.purge_raw_after_days,
                "ocr_text_review": profile.ocr_text_review, "ocr_min_confidence": profile.ocr_min_confidence}

    def clean_safe_private(self) -> list[list]:
        entries, errors = [], []
        for number, cells in _rows(self.cleaned_data["safe_private"]):
            if len(cells) != 2 or not cells[0]:
                errors.append(f"line {number}: write private creator, element")
                continue
            try:
                element = int(cells[1].lower().removeprefix("0x"), 16)
            except ValueError:
                element = -1
            if not 0 <= element <= 0xFF:
                errors.append(f"line {number}: the element is a hex offset 00-FF, not {cells[1]!r}")
                continue
            entries.append([cells[0], element])
        if errors:
            raise ValidationError(errors)
        return entries

    def clean_pixel_regions(self) -> list[dict]:
        regions: dict[tuple, dict] = {}
        errors = []
        for number, cells in _rows(self.cleaned_data["pixel_regions"]):
            if len(cells) != 8:
                errors.append(f"line {number}: write manufacturer, model, rows, columns, x0, y0, x1, y1 "
                              f"({len(cells)} values given)")
                continue
            try:
                rows, columns = (int(v) if v else None for v in cells[2:4])
                x0, y0, x1, y1 = (int(v) for v in cells[4:])
            except ValueError:
                errors.append(f"line {number}: rows, columns and corners are whole numbers of pixels")
                continue
            if any(v is not None and v <= 0 for v in (rows, columns)):
                errors.append(f"line {number}: rows and columns are positive, or blank for any size")
                continue
            if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
                errors.append(f"line {number}: the box needs 0 <= x0 < x1 and 0 <= y0 < y1")
                continue
            key = (cells[0], cells[1], rows, columns)
            region = regions.setdefault(key, {"manufacturer": cells[0], "model": cells[1], "rows": rows,
                                              "columns": columns, "boxes": []})
            region["boxes"].append([x0, y0, x1 - x0, y1 - y0])
        if errors:
            raise ValidationError(errors)
        return list(regions.values())

    def clean(self):
        data = super().clean()
        options = set(data.get("options") or ())
        if data.get("safe_private") and "retain_safe_private" not in options:
            self.add_error("safe_private", "an allowlist applies only with the Retain Safe Private option: "
                                           "switch it on or empty the list")
        if data.get("pixel_regions") and "clean_pixel_data" not in options:
            self.add_error("pixel_regions", "regions are blanked only under the Clean Pixel Data option: "
                                            "switch it on or empty the list")
        if "options" in data and "safe_private" in data:
            try:
                Profile(options=frozenset(options),
                        safe_private=frozenset((c, e) for c, e in data.get("safe_private") or ()))
            except ValueError as exc:
                if "allowlist" not in str(exc):  # already said, on the field
                    self.add_error("options", str(exc))
        return data

    def settings(self) -> dict:
        """The cleaned values as profile_create_version's keyword arguments (without the note)."""
        data = self.cleaned_data
        return {"options": sorted(data["options"]), "safe_private": data["safe_private"],
                "pixel_regions": data["pixel_regions"], "purge_raw_after_days": data["purge_raw_after_days"],
                "ocr_text_review": data["ocr_text_review"], "ocr_min_confidence": data["ocr_min_confidence"]}


class PreviewForm(forms.Form):
    """A sample file, never stored, and which settings to preview it with."""

    use_required_attribute = False

    CURRENT, UNSAVED = "current", "unsaved"
    sample = forms.FileField(label="Sample DICOM file",
                             help_text=f"Up to {PREVIEW_MAX_BYTES // (1024 * 1024)} MB; read in memory, never stored.")
    source = forms.ChoiceField(choices=[(CURRENT, "the current version"), (UNSAVED, "the settings in this form (unsaved)")],
                               initial=CURRENT, widget=forms.RadioSelect, label="Preview with")

    def clean_sample(self):
        sample = self.cleaned_data["sample"]
        if sample.size > PREVIEW_MAX_BYTES:
            raise ValidationError(f"the sample is {sample.size:,} bytes; the preview takes up to "
                                  f"{PREVIEW_MAX_BYTES:,}")
        return sample
