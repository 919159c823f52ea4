"""Synthetic pictures for the image tests (no data set to download)."""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def picture(seed: int, width: int = 64, height: int = 48) -> NDArray[np.uint8]:
    """A smooth random grey picture (a few soft blobs on a gradient)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    levels = 60 + 80 * x / width * rng.uniform(-1, 1) + 60 * y / height * rng.uniform(-1, 1)
    for _ in range(5):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 14)
        levels += rng.uniform(-90, 90) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    return np.clip(levels, 0, 255).astype(np.uint8)


def png_of(pixels: NDArray[np.uint8], fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def reencoded(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The picture after a trip through lossy JPEG."""
    return np.asarray(Image.open(io.BytesIO(png_of(pixels, "JPEG"))))
