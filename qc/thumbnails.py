"""Series thumbnails: the middle image of a series, windowed as the file says, as a small PNG.

Rendered server-side from the de-identified file in the archive (never the quarantine copy) and cached
under the archived object's sha256, so a cached image can never show other pixels than the file.
Held outputs (de-identified, waiting for QC review in quarantine, never the raw file) are rendered
the same way, larger, one frame at a time (``held_frame_png``).
"""

import io

import numpy as np
import pydicom
from django.core.cache import cache
from django.core.files.storage import storages
from PIL import Image

from intake.models import Instance, Series

SIZE = 256
CACHE_SECONDS = 7 * 24 * 3600


def _middle(series: Series) -> Instance | None:
    instances = list(series.instances.filter(status=Instance.Status.DEIDENTIFIED).exclude(deid_key="")
                     .order_by("pk"))
    if not instances:
        return None
    pick_key = f"qc:thumb-pick:{series.pk}:{len(instances)}:{instances[-1].pk}"
    picked = cache.get(pick_key)
    if picked is not None:
        return next((i for i in instances if i.pk == picked), None)
    # by Instance Number when the headers have it; intake's order (arrival) otherwise
    numbered = []
    for instance in instances:
        with storages["archive"].open(instance.deid_key, "rb") as stream:
            header = pydicom.dcmread(stream, stop_before_pixels=True, specific_tags=["InstanceNumber"])
        number = header.get("InstanceNumber")
        numbered.append((int(number) if number not in (None, "") else 0, instance.pk, instance))
    numbered.sort(key=lambda item: item[:2])
    middle = numbered[len(numbered) // 2][2]
    cache.set(pick_key, middle.pk, CACHE_SECONDS)
    return middle


def _first(value):
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue | list | tuple) else value)


def render_png(data: bytes, *, frame: int | None = None, size: int = SIZE) -> bytes:
    """One DICOM file's frame (0-based; default the middle one) as an 8-bit PNG at most ``size`` pixels
    wide or high. A frame the file does not have raises IndexError."""
    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames") or 1)
    if frame is not None and not 0 <= frame < frames:
        raise IndexError(f"the file has {frames} frame(s), not a frame {frame + 1}")
    if frames > 1:
        pixels = pixels[frames // 2 if frame is None else frame]
    if ds.get("SamplesPerPixel", 1) == 3:
        image = Image.fromarray(pixels.astype(np.uint8), mode="RGB")
    else:
        values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0)
        if ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, ""):
            center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
            low, high = center - width / 2, center + width / 2
        else:
            low, high = float(values.min()), float(values.max())
        scaled = np.clip((values - low) / max(high - low, 1e-6), 0, 1) * 255
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            scaled = 255 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def series_thumbnail(*, series: Series) -> bytes | None:
    """The series' thumbnail PNG, from the cache or rendered now; None when nothing can be shown."""
    instance = _middle(series)
    if instance is None:
        return None
    key = f"qc:thumb:{instance.deid_sha256}:{SIZE}"
    png = cache.get(key)
    if png is None:
        with storages["archive"].open(instance.deid_key, "rb") as stream:
            data = stream.read()
        try:
            png = render_png(data)
        except Exception:  # noqa: BLE001 - an undecodable file has no thumbnail; the integrity check says why
            return None
        cache.set(key, png, CACHE_SECONDS)
    return png


HELD_SIZE = 1024


def held_frame_png(*, frame: int, data: bytes) -> bytes:
    """A held output's frame as a PNG of at most HELD_SIZE pixels; never cached.

    A held output may still show burned-in PHI, and PHI lives only in quarantine: so no copy in the
    cache, and the response is sent no-store. Raises IndexError for a frame the file does not have,
    ValueError when its pixels cannot be decoded.
    """
    try:
        return render_png(data, frame=frame, size=HELD_SIZE)
    except IndexError:
        raise
    except Exception as exc:  # noqa: BLE001 - no decoder, a corrupt stream: nothing to show
        raise ValueError(f"the held output cannot be rendered ({type(exc).__name__})") from exc
