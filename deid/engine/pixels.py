"""Clean Pixel Data: blank rectangles in every frame of native pixel data (and of overlays kept by Clean Graphics).

Blanked samples become stored value 0. Compressed pixel data is decoded first when pydicom has a decoder
for its transfer syntax (then the instance is written as Explicit VR Little Endian); otherwise the
instance is refused, since re-encoding a lossy stream here would degrade the image anyway.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from .errors import PixelDataError

Box = tuple[int, int, int, int]  # x (column), y (row), width, height, in pixels from the top-left


def installed_decoders() -> dict[str, list[str]]:
    """Compressed transfer syntaxes pydicom can decode here, by name, with the plugins that do it."""
    from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS

    found = {}
    for uid in _PIXEL_DATA_DECODERS:
        decoder = get_decoder(uid)
        if uid.is_compressed and decoder.is_available:
            found[uid.name] = sorted(decoder.available_plugins)
    return found


def _clip(box: Box, *, rows: int, columns: int, row0: int = 0, col0: int = 0) -> tuple[int, int, int, int] | None:
    """The box as half-open (top, bottom, left, right) in a plane whose top-left is (row0, col0) of the image."""
    x, y, width, height = box
    top, bottom = max(y - row0, 0), min(y + height - row0, rows)
    left, right = max(x - col0, 0), min(x + width - col0, columns)
    if top >= bottom or left >= right:
        return None
    return top, bottom, left, right


def _check(boxes: list[Box]) -> None:
    for box in boxes:
        if len(box) != 4 or any(not isinstance(v, int) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"a pixel box is (x, y, width, height) with positive size, not {box!r}")


def clean_pixels(ds: Dataset, *, boxes: list[Box], overlays: bool) -> int:
    """Blank ``boxes`` in every frame (and in overlay planes when ``overlays``); returns frames cleaned."""
    _check(boxes)
    if not boxes:
        return 0
    if "PixelData" not in ds:
        raise PixelDataError("pixel boxes given for an instance without Pixel Data")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and (not syntax.is_transfer_syntax or syntax.is_compressed):
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            decoder = None  # a transfer syntax pydicom has no decoder class for at all
        if decoder is None or not decoder.is_available:
            raise PixelDataError(f"cannot clean pixel data compressed as {syntax.name}: no decoder is installed "
                                 f"for it (installed: {', '.join(installed_decoders()) or 'none'})")
        try:
            # keep the SOP Instance UID: the UID mapping must stay a function of the original
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # numpy missing, a corrupt stream: either way nothing was cleaned
            raise PixelDataError(f"cannot decode pixel data compressed as {syntax.name}: {exc}") from exc
    frames = _blank_native(ds, boxes)
    if overlays:
        _blank_overlays(ds, boxes, big_endian=syntax is not None and not syntax.is_little_endian)
    return frames


def _blank_native(ds: Dataset, boxes: list[Box]) -> int:
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples, allocated = int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)
    frames = int(ds.get("NumberOfFrames") or 1)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if allocated % 8:
        raise PixelDataError(f"cannot blank {allocated}-bit packed pixel data")
    if photometric.endswith(("_422", "_420")):
        raise PixelDataError(f"cannot blank subsampled {photometric} pixel data")
    size = allocated // 8
    planar = samples > 1 and int(ds.get("PlanarConfiguration", 0)) == 1
    plane = rows * columns * size
    frame = plane * samples
    data = bytearray(ds.PixelData)
    if len(data) < frame * frames:
        raise PixelDataError(f"Pixel Data holds {len(data)} bytes, {frame * frames} expected")
    # (offset of the first plane, bytes per pixel) for each separately stored plane of a frame
    layout = [(p * plane, size) for p in range(samples)] if planar else [(0, size * samples)]
    for number in range(frames):
        for box in boxes:
            clipped = _clip(box, rows=rows, columns=columns)
            if clipped is None:
                continue
            top, bottom, left, right = clipped
            for start, step in layout:
                for row in range(top, bottom):
                    begin = number * frame + start + (row * columns + left) * step
                    data[begin:begin + (right - left) * step] = bytes((right - left) * step)
    ds.PixelData = bytes(data)
    return frames


def _blank_overlays(ds: Dataset, boxes: list[Box], *, big_endian: bool) -> None:
    for group in range(0x6000, 0x6020, 2):
        data_tag = (group << 16) | 0x3000
        if data_tag not in ds:
            continue
        rows, columns = int(ds[(group << 16) | 0x0010].value), int(ds[(group << 16) | 0x0011].value)
        origin = ds.get((group << 16) | 0x0050)
        row0, col0 = (int(origin.value[0]) - 1, int(origin.value[1]) - 1) if origin is not None else (0, 0)
        count = ds.get((group << 16) | 0x0015)
        frames = int(count.value) if count is not None and count.value not in (None, "") else 1
        word_swap = big_endian and ds[data_tag].VR == "OW"
        bits = bytearray(ds[data_tag].value)
        for number in range(frames):
            for box in boxes:
                clipped = _clip(box, rows=rows, columns=columns, row0=row0, col0=col0)
                if clipped is None:
                    continue
                top, bottom, left, right = clipped
                for row in range(top, bottom):
                    for column in range(left, right):
                        # overlay bits are packed from the least significant bit of each byte (PS3.5 8.1.2)
                        index = (number * rows + row) * columns + column
                        byte = (index >> 3) ^ 1 if word_swap else index >> 3
                        if byte < len(bits):
                            bits[byte] &= ~(1 << (index & 7)) & 0xFF
        ds[data_tag].value = bytes(bits)
