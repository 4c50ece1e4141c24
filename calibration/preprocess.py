"""The one preprocessing contract shared by calibration, validation and on-device runners.

`xception` is `keras.applications.xception.preprocess_input`: RGB scaled to [-1, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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
        """Read an image file and return one preprocessed HWC float32 array."""
        from PIL import Image

        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
        with Image.open(path) as im:
            if self.channels == 1 or self.color == "grayscale":
                im = im.convert("L")
            elif self.color == "grayscale_to_rgb":
                im = im.convert("L").convert("RGB")
            else:
                im = im.convert("RGB")
            im = im.resize((self.width, self.height), resample[self.interpolation])
            arr = np.asarray(im, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[..., None]
        return self.normalize(arr)

    def normalize(self, arr: np.ndarray) -> np.ndarray:
        arr = arr.astype(np.float32)
        if self.mode == "xception":
            return arr / 127.5 - 1.0
        if self.mode == "unit":
            return arr / 255.0
        if self.mode == "imagenet":
            return (arr / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        return arr
