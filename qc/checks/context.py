"""What a check sees: pure data, built by qc.services from the database and the archive (or by a test from
files). No ORM here."""

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from trials.charter import Procedure
from trials.charter import Visit as CharterVisit

PASS, FAIL, WARN = "pass", "fail", "warn"


@dataclass
class Finding:
    """One result of one rule, for the study (``series_id`` None) or one series."""

    rule: str
    outcome: str  # pass, fail or warn
    expected: str = ""
    measured: str = ""
    message: str = ""
    series_id: int | None = None


@dataclass
class InstanceData:
    instance_id: int
    header: Dataset | None  # the de-identified file's header (no pixel data); None when it cannot be read
    read_error: str = ""
    # opens the whole de-identified file (pixel data included) as bytes; only the integrity check calls it
    load: Callable[[], bytes] | None = None


@dataclass
class SeriesData:
    series_id: int
    series_number: int | None
    modality: str
    instances: list[InstanceData] = field(default_factory=list)

    @property
    def headers(self) -> list[Dataset]:
        return [i.header for i in self.instances if i.header is not None]

    def first(self, keyword: str, default=None):
        """The first non-empty value of ``keyword`` among the series' headers."""
        for header in self.headers:
            value = header.get(keyword)
            if value not in (None, ""):
                return value
        return default

    def values(self, keyword: str) -> list:
        """Every non-empty value of ``keyword``, one per instance that has it."""
        return [header.get(keyword) for header in self.headers if header.get(keyword) not in (None, "")]

    @property
    def description(self) -> str:
        return str(self.first("SeriesDescription", "") or "").strip()

    @property
    def label(self) -> str:
        number = "?" if self.series_number is None else self.series_number
        return f"series {number}" + (f" ({self.description})" if self.description else "")

    @property
    def is_localizer(self) -> bool:
        """Scout / localizer images are not diagnostic series: acquisition rules do not apply to them."""
        image_type = self.first("ImageType") or []
        values = image_type if isinstance(image_type, list | tuple | MultiValue) else str(image_type).split("\\")
        return any(str(v).strip().upper() == "LOCALIZER" for v in values)


@dataclass
class StudyContext:
    """A study as the checks see it."""

    study_id: int
    procedure: Procedure | None
    charter_version: str  # e.g. "1.0"; recorded with every result
    visit: CharterVisit | None = None
    visit_window: tuple[datetime.date, datetime.date] | None = None  # the subject's window, inclusive
    acquisition_date: datetime.date | None = None  # as recorded at intake, before any date shift
    series: list[SeriesData] = field(default_factory=list)
    qualified_scanners: list[dict[str, str]] = field(default_factory=list)  # identities of approved ones
    deid_options: frozenset[str] = frozenset()  # the de-identification profile options the files went through
    # instances de-identification held or refused, with why: [{"instance_id", "outcome", "findings"}]
    deid_held: list[dict] = field(default_factory=list)
    not_archived: int = 0  # instances of the study without a de-identified copy in the archive

    @property
    def image_series(self) -> list[SeriesData]:
        """Series the acquisition rules apply to: not localizers."""
        return [s for s in self.series if not s.is_localizer]
