from . import register
from .context import FAIL, PASS, WARN, Finding, StudyContext

FIELDS = (("Manufacturer", "manufacturer"), ("ManufacturerModelName", "model"), ("DeviceSerialNumber", "serial"))


def _describe(identity: dict) -> str:
    return f"{identity.get('manufacturer', '')} {identity.get('model', '')} (SN {identity.get('serial', '') or '?'})"


@register("scanner")
def check(ctx: StudyContext) -> list[Finding]:
    """The images come from the scanner the site is qualified on for this procedure.

    Intake compares the raw header when the study arrives (and invalidates the qualification on a
    mismatch); here the de-identified header is compared again. Without the Retain Device Identity option
    the serial number is replaced by a dummy, so only manufacturer and model can be verified: a warning.
    """
    if ctx.procedure is None:
        return []
    headers = [h for s in ctx.image_series for h in s.headers]
    if not headers:
        return []
    seen = {key: str(headers[0].get(keyword) or "").strip() for keyword, key in FIELDS}
    if not ctx.qualified_scanners:
        return [Finding("", FAIL, expected="a scanner with an approved qualification", measured=_describe(seen),
                        message=f"the site holds no approved qualification for {ctx.procedure.code} "
                                "(invalidated or never approved)")]
    expected = "; ".join(_describe(q) for q in ctx.qualified_scanners)
    same_model = [q for q in ctx.qualified_scanners
                  if (q.get("manufacturer", ""), q.get("model", "")) == (seen["manufacturer"], seen["model"])]
    if not same_model:
        return [Finding("", FAIL, expected=expected, measured=_describe(seen),
                        message="manufacturer/model differ from the qualified scanner")]
    if "retain_device_identity" not in ctx.deid_options:
        return [Finding("", WARN, expected=expected, measured=f"{seen['manufacturer']} {seen['model']} (SN removed)",
                        message="manufacturer and model match; the serial number is not verifiable after "
                                "de-identification (Retain Device Identity is off)")]
    if any(q.get("serial", "") == seen["serial"] for q in same_model):
        return [Finding("", PASS, expected=expected, measured=_describe(seen), message="the qualified scanner")]
    return [Finding("", FAIL, expected=expected, measured=_describe(seen),
                    message="same model, but another device serial number than the qualified scanner")]
