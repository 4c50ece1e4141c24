"""The one preprocessing contract shared by calibration, validation and on-device runners.

`xception` is `keras.applications.xception.preprocess_input`: RGB scaled to [-1, 1].

Image files are decoded right or refused (`decode`): the file must be a regular file of at most
`MAX_IMAGE` bytes (no FIFO, device or link loop: `edgepipe.core.safeio`) and at most `MAX_PIXELS`
pixels (Pillow's decompression-bomb limit, checked from the header before any pixel is decoded);
8-bit images go through Pillow's conversions exactly as always; 16-bit images (`I;16*`, and `I`
with values above 255) are scaled by 255/65535 in float, never clipped at 255; float images
(`F`) and 32-bit integer images beyond 16 bits are refused. Any decoding failure is an
`InputError` naming the file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received

MAX_IMAGE = safeio.MAX_IMAGE
MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: its DecompressionBombWarning threshold
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# value range each mode produces (used by the data-range checks)
RANGES = {"xception": (-1.0, 1.0), "unit": (0.0, 1.0), "raw": (0.0, 255.0), "imagenet": (-2.2, 2.7)}


@dataclass(frozen=True)
class PreprocessSpec:
    height: int
    width: int
    channels: int = 3
    mode: str = "xception"
    interpolation: str = "bilinear"
    color: str = "rgb"

    @classmethod
    def from_input(cls, inp) -> PreprocessSpec:
        return cls(inp.size[0], inp.size[1], inp.channels, inp.preprocessing, inp.interpolation, inp.color)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def load(self, path) -> np.ndarray:
        """Read an image file and return one preprocessed HWC float32 array (InputError if it cannot be)."""
        return self.normalize(decode(path, self))

    def resample(self):
        from PIL import Image

        return {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[self.interpolation]

    def normalize(self, arr: np.ndarray) -> np.ndarray:
        arr = arr.astype(np.float32)
        if self.mode == "xception":
            return arr / 127.5 - 1.0
        if self.mode == "unit":
            return arr / 255.0
        if self.mode == "imagenet":
            return (arr / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        return arr


def decode(path, spec: PreprocessSpec) -> np.ndarray:
    """An image file as resized HWC float32 pixels in [0, 255] (before scaling), or an InputError."""
    import warnings

    from PIL import Image

    label = f"image file {str(path)!r}"
    try:
        with safeio.open_regular(path, "image file", MAX_IMAGE) as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise InputError(expected_received(label, f"at most {MAX_PIXELS} pixels (a decompression bomb "
                                                              "otherwise)", f"{w} x {h} = {w * h} pixels"))
                arr = _wide(im, label, spec) if im.mode in (*SIXTEEN_BIT, "I", "F") else _eight_bit(im, spec)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(expected_received(label, f"at most {MAX_PIXELS} pixels (a decompression bomb otherwise)",
                                           str(err)[:200])) from None
    except MemoryError:
        raise InputError(expected_received(label, "an image that fits in memory", "MemoryError")) from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # Pillow's errors for unreadable or truncated files
        why = "not an image format Pillow can identify" if isinstance(err, Image.UnidentifiedImageError) \
            else str(err)[:200]
        raise InputError(expected_received(label, "a readable image file (PNG, JPEG, BMP, TIFF)",
                                           f"{type(err).__name__}: {why}")) from None
    return arr[..., None] if arr.ndim == 2 else arr


def _eight_bit(im, spec: PreprocessSpec) -> np.ndarray:
    if spec.channels == 1 or spec.color == "grayscale":
        im = im.convert("L")
    elif spec.color == "grayscale_to_rgb":
        im = im.convert("L").convert("RGB")
    else:
        im = im.convert("RGB")
    im = im.resize((spec.width, spec.height), spec.resample())
    return np.asarray(im, dtype=np.float32)


def _wide(im, label: str, spec: PreprocessSpec) -> np.ndarray:
    """16-bit (and 32-bit integer holding at most 16 bits) grayscale, scaled to [0, 255] in float."""
    from PIL import Image

    if im.mode == "F":
        raise InputError(expected_received(label, "8- or 16-bit integer pixels", "32-bit float pixels (mode F)"))
    pixels = np.asarray(im)
    top = int(pixels.max()) if pixels.size else 0
    if im.mode == "I" and (top > 65535 or int(pixels.min(initial=0)) < 0):
        raise InputError(expected_received(label, "8- or 16-bit integer pixels",
                                           f"32-bit integer pixels in [{int(pixels.min())}, {top}]"))
    scale = 255.0 / 65535.0 if (im.mode in SIXTEEN_BIT or top > 255) else 1.0
    gray = Image.fromarray((pixels.astype(np.float64) * scale).astype(np.float32))  # mode F
    arr = np.asarray(gray.resize((spec.width, spec.height), spec.resample()), dtype=np.float32)
    if spec.channels == 1 or spec.color == "grayscale":
        return arr
    return np.repeat(arr[..., None], 3, axis=2)
