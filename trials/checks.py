from django.conf import settings
from django.core.checks import Warning, register


@register("security", deploy=True)
def pseudonym_key_is_set(app_configs, **kwargs):
    if settings.PSEUDONYM_KEY.startswith("derived-from-secret-key:"):
        return [Warning("PSEUDONYM_KEY is not set; patient-ID hashes depend on SECRET_KEY and would break "
                        "if it were rotated.", hint="Set PSEUDONYM_KEY once and never change it.",
                        id="trials.W001")]
    return []
