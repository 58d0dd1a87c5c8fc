"""What an image model saw and why it answered, for ``/predict?include=input,explanation``.

``picture_data_url``: the prepared picture (the model's real input, after ``service.imaging``)
as a grayscale PNG data URL, light ink on dark as the model saw it.

``occlusion_map`` (Zeiler and Fergus 2014): cover one square patch of the picture with its
background, ask the model again, and see how much its answer drops.  Every patch position that
holds ink goes to the model in one batch (covering blank paper changes nothing).  A pixel's
value is the mean drop over the patches that cover it: positive where the ink pushed the model
to its answer, negative where covering it made the answer more likely, zero where covering
changes nothing.

The drop is measured in the answer's log-odds, ln(p / (1 - p)), not in its probability: a
confident answer's probability is saturated.  For a clear drawn 7 (p = 1.0 in float32) no
patch moves it by more than 0.0005, and a probability map is 0 (to 4 decimals) on 87% of its
ink; the log-odds map is 0 on none of it.  Patches are filled with the background rather than
a mid-grey: grey would add ink where there is none, and the map would mix "this ink matters"
with "ink here would change the answer".

Nothing here knows a model: the picture's shape comes from the manifest's image spec, and the
model is reached through ``probabilities_of`` (prepared pictures -> probabilities), which the
inference core supplies.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from itertools import product

import numpy as np
from PIL import Image

# A patch side is this fraction of the picture's shorter side: 4 px on MNIST's 28, about one
# stroke's width, so covering a patch removes a piece of one stroke.
PATCH_FRACTION = 1 / 7


def log_odds(probabilities: np.ndarray, label_index: int) -> np.ndarray:
    """ln(p / (1 - p)) of one label per row, with 1 - p summed from the other labels.

    Summing the others keeps their precision: a confident answer's 1 - p is 1e-9, far below
    float32's resolution near 1, so ``1 - p`` computed from p would be 0.
    """
    rows = probabilities.astype(np.float64)
    chosen = rows[:, label_index]
    others = np.delete(rows, label_index, axis=1).sum(axis=1)
    tiny = np.finfo(np.float32).tiny  # a probability that underflowed to 0 in the graph's softmax
    return np.log(np.maximum(chosen, tiny)) - np.log(np.maximum(others, tiny))


def picture_data_url(picture: np.ndarray) -> str:
    """A prepared picture (float [h, w] in [0, 1]) -> ``data:image/png;base64,...``."""
    pixels = np.round(np.clip(picture, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def occlusion_map(
    picture: np.ndarray, label_index: int, probabilities_of: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """float [h, w]: how much the probability of ``label_index`` drops when each pixel is covered.

    ``probabilities_of`` takes a batch of pictures [n, h, w] and returns probabilities [n, labels].
    """
    height, width = picture.shape
    patch = max(1, round(min(height, width) * PATCH_FRACTION))
    stride = max(1, patch // 2)
    # Start half a patch before the edge so that border pixels are covered as often as others.
    tops = range(stride - patch, height, stride)
    lefts = range(stride - patch, width, stride)
    windows = [
        (slice(max(top, 0), top + patch), slice(max(left, 0), left + patch)) for top, left in product(tops, lefts)
    ]
    background = float(picture.min())  # prepared pictures are light ink on a dark background
    # Covering a patch with no ink changes nothing (a drop of 0): only the others go to the model.
    inked = [window for window in windows if np.any(picture[window] != background)]
    # Row 0 is the picture itself, so the baseline comes from the same batch as the drops.
    batch = np.repeat(picture[np.newaxis], len(inked) + 1, axis=0)
    for occluded, window in zip(batch[1:], inked):
        occluded[window] = background
    evidence = log_odds(probabilities_of(batch), label_index)
    total = np.zeros((height, width), dtype=np.float64)
    covered = np.zeros((height, width), dtype=np.float64)
    for drop, window in zip(evidence[0] - evidence[1:], inked):
        total[window] += drop
    for window in windows:
        covered[window] += 1
    return (total / covered).astype(np.float32)
