"""Slice positions along the slice normal, from Image Orientation / Position (Patient)."""

from ._common import number


def positions(series) -> tuple[list[float], str]:
    """Each single-frame image's position along the normal (mm), sorted; or ([], why not)."""
    result = []
    normal = None
    for header in series.headers:
        if int(header.get("NumberOfFrames") or 1) > 1:
            return [], "multi-frame images (positions per frame are not checked)"
        iop, ipp = header.get("ImageOrientationPatient"), header.get("ImagePositionPatient")
        if not iop or not ipp or len(iop) != 6 or len(ipp) != 3:
            return [], "no Image Orientation/Position (Patient)"
        row, col = [number(v) for v in iop[:3]], [number(v) for v in iop[3:]]
        point = [number(v) for v in ipp]
        if None in row or None in col or None in point:
            return [], "unreadable Image Orientation/Position (Patient)"
        this = (row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2],
                row[0] * col[1] - row[1] * col[0])
        if normal is None:
            normal = this
        elif sum(abs(a - b) for a, b in zip(normal, this, strict=True)) > 1e-3:
            return [], "images with different orientations (not one stack)"
        result.append(sum(p * n for p, n in zip(point, normal, strict=True)))
    return sorted(result), ""
