"""What the engine raises: the instance cannot be de-identified as the trial asked."""


class DeidError(Exception):
    """The instance cannot be de-identified as asked; nothing about it is safe to release."""


class PixelDataError(DeidError):
    """Clean Pixel Data was asked for pixel data this installation cannot rewrite."""
