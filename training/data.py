"""Training data: MNIST through torchvision, held in memory, and the seed notebooks' small tensors.

MNIST is small (47 MB of uint8 pixels), so it is loaded once into tensors and batched by indexing
with a random permutation.  A per-sample ``DataLoader`` (PIL image -> ``ToTensor`` -> collate) spends
most of an epoch in Python per image; see ``bench/train_epoch.py`` for the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST

# The pixel statistics of the MNIST training set, used by the model's own Normalize layer.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class DatasetNotFound(RuntimeError):
    """The dataset is not where we were told to look; the message says how to get it."""


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # float32 [N, 1, 28, 28], raw pixels in [0, 1]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))


def load_mnist(data_dir: Path, *, train: bool, download: bool = False, limit: int | None = None) -> ImageSet:
    """The official MNIST training (60,000) or test (10,000) images; the first ``limit`` if given."""
    try:
        dataset = MNIST(root=str(data_dir), train=train, download=download)
    except RuntimeError as error:  # torchvision's "Dataset not found. You can use download=True ..."
        raise DatasetNotFound(
            f"MNIST was not found under {Path(data_dir).resolve()} (torchvision looks for "
            f"{Path(data_dir) / 'MNIST' / 'raw'} with the four IDX files). Point --data-dir (or the "
            "MNIST_DATA_DIR environment variable) at a folder that contains MNIST/raw, or add "
            "--download to fetch it from the internet."
        ) from error
    images, labels = dataset.data, dataset.targets
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ImageSet(images.unsqueeze(1).float().div_(255.0), labels.long())


@dataclass(frozen=True)
class RandomAffine:
    """Distort a batch [N, C, H, W] with one random affine map per image (rotation, scale, shear, shift).

    The affine distortions Simard et al. (2003) used to bring an MLP from 98.4% to 98.9% on MNIST;
    done on the whole batch at once with affine_grid/grid_sample, so it costs little per epoch.
    Each parameter is drawn uniformly from [-max, max].
    """

    max_degrees: float = 12.0
    max_scale: float = 0.1
    max_shear: float = 0.15
    max_shift_pixels: float = 2.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        theta = self.matrices(images.shape[0], images.shape[-1], images.device)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, align_corners=False)

    def matrices(self, count: int, height: int, device: torch.device | str) -> torch.Tensor:
        """``count`` random affine maps as affine_grid's [count, 2, 3] matrices."""

        def uniform(bound: float) -> torch.Tensor:
            return (torch.rand(count, device=device) * 2 - 1) * bound

        angle = uniform(math.radians(self.max_degrees))
        scale = 1 + uniform(self.max_scale)
        shear = uniform(self.max_shear)
        # affine_grid coordinates run from -1 to 1 across the image, so one pixel is 2 / height.
        shift_x, shift_y = uniform(self.max_shift_pixels * 2 / height), uniform(self.max_shift_pixels * 2 / height)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        return torch.stack(
            [torch.stack([cos, shear - sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
        )


class ShuffledBatches:
    """Mini-batches of in-memory tensors, in a fresh random order every time it is iterated.

    ``transform`` (e.g. ``RandomAffine()``) is applied to each batch of inputs as it is drawn.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.inputs, self.targets = inputs, targets
        self.batch_size = batch_size
        self.transform = transform

    def __len__(self) -> int:
        return math.ceil(len(self.inputs) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.inputs), device=self.inputs.device)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            inputs = self.inputs[chosen]
            if self.transform is not None:
                inputs = self.transform(inputs)
            yield inputs, self.targets[chosen]


@dataclass(frozen=True)
class HandwritingDistortions:
    """How other people write and scan, applied to a batch [N, 1, H, W] of light-on-dark pictures.

    Every picture gets a random affine map (rotation, scale, slant, shift; ``affine``) combined
    with an elastic distortion (Simard et al. 2003: a random displacement field smoothed by a
    Gaussian of about ``elastic_sigma`` pixels, moving pixels by ``elastic_pixels`` on average) in
    one resampling.
    Then, each with its own probability: thicker or thinner strokes (dilate or erode by one
    pixel), low resolution (down to 9-15 pixels and back, as a scanner or a thumbnail does) or a
    blur, and a fainter or harsher ink (gain and gamma).  Blurred pictures are rescaled so their
    strongest ink is 1 again, as the service's MNIST recipe does.
    """

    affine: RandomAffine = RandomAffine()
    elastic_pixels: float = 1.2
    elastic_sigma: float = 4.0
    thicker: float = 0.25
    thinner: float = 0.1
    low_resolution: float = 0.3
    blur: float = 0.1
    ink_level: float = 0.2

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = self._resample(images)
        images = torch.where(self._chosen(images, self.thicker), F.max_pool2d(images, 3, 1, 1), images)
        images = torch.where(self._chosen(images, self.thinner), -F.max_pool2d(-images, 3, 1, 1), images)
        softened = torch.where(self._chosen(images, self.low_resolution), self._low_resolution(images), images)
        softened = torch.where(self._chosen(images, self.blur), _gaussian_blur(softened, 1.0), softened)
        strongest = softened.amax(dim=(1, 2, 3), keepdim=True)
        images = softened / strongest.clamp_min(1e-3) * (strongest > 0)
        count = len(images)
        gain = torch.empty(count, 1, 1, 1, device=images.device).uniform_(0.6, 1.0)
        gamma = torch.empty(count, 1, 1, 1, device=images.device).uniform_(0.6, 1.6)
        faded = gain * images.clamp_min(0).pow(gamma)
        return torch.where(self._chosen(images, self.ink_level), faded, images).clamp(0, 1)

    def _resample(self, images: torch.Tensor) -> torch.Tensor:
        count, height = images.shape[0], images.shape[-1]
        theta = self.affine.matrices(count, height, images.device)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        # A smooth random field, made by enlarging a coarse one (as cheap as it gets, and as smooth
        # as Simard's Gaussian-filtered noise), then scaled to a spread of elastic_pixels in
        # affine_grid's units (one pixel is 2 / height).
        coarse = max(2, round(height / (2 * self.elastic_sigma)))
        field = torch.rand(count, coarse, coarse, 2, device=images.device) * 2 - 1
        field = F.interpolate(field.permute(0, 3, 1, 2), size=(height, height), mode="bicubic", align_corners=True)
        field = field / field.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6) * self.elastic_pixels * 2 / height
        return F.grid_sample(images, (grid + field.permute(0, 2, 3, 1)).contiguous(), align_corners=False)

    @staticmethod
    def _low_resolution(images: torch.Tensor) -> torch.Tensor:
        size = int(torch.randint(9, 16, ()).item())
        small = F.interpolate(images, size=(size, size), mode="area")
        return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)

    @staticmethod
    def _chosen(images: torch.Tensor, probability: float) -> torch.Tensor:
        return torch.rand(len(images), 1, 1, 1, device=images.device) < probability


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel of [N, C, H, W], zero beyond the border."""
    radius = max(1, round(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    rows = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    images = F.conv2d(images, rows, padding=(0, radius), groups=channels)
    return F.conv2d(images, rows.transpose(2, 3), padding=(radius, 0), groups=channels)


class SoftTargetBatches:
    """Shuffled mini-batches of digits and synthetic non-digits, with soft targets.

    ``labels`` holds a digit, or -1 for a non-digit.  A digit's target is its one-hot row; a
    non-digit's is the uniform distribution scaled by ``outlier_weight`` (cross-entropy to it is
    the outlier-exposure loss of Hendrycks et al. 2019, weighted); and a share ``blend_share`` of
    the digits is blended with another digit of the batch (mixup, Zhang et al. 2018: weights
    0.35-0.65), targeted at both in proportion, so that a picture of two digits at once is an
    uncertain one.  ``transform`` is applied to each batch after blending.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        classes: int,
        outlier_weight: float,
        blend_share: float,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.batches = ShuffledBatches(inputs, labels, batch_size)
        self.classes, self.outlier_weight, self.blend_share = classes, outlier_weight, blend_share
        self.transform = transform

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for inputs, labels in self.batches:
            digit = labels >= 0
            targets = torch.full((len(labels), self.classes), self.outlier_weight / self.classes, device=labels.device)
            targets[digit] = F.one_hot(labels[digit], self.classes).to(targets.dtype)
            partner = torch.randperm(len(labels), device=labels.device)
            chosen = digit & digit[partner] & (labels != labels[partner])
            chosen &= torch.rand(len(labels), device=labels.device) < self.blend_share
            weight = torch.empty(len(labels), device=labels.device).uniform_(0.35, 0.65)
            blended = weight.view(-1, 1, 1, 1) * inputs + (1 - weight.view(-1, 1, 1, 1)) * inputs[partner]
            blended = blended / blended.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
            inputs = torch.where(chosen.view(-1, 1, 1, 1), blended, inputs)
            mixed = weight.view(-1, 1) * targets + (1 - weight.view(-1, 1)) * targets[partner]
            targets = torch.where(chosen.view(-1, 1), mixed, targets)
            if self.transform is not None:
                inputs = self.transform(inputs)
            yield inputs, targets


# The seed notebooks' data, as batches of rows (the notebooks use unbatched vectors).

def linear_system() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 000: the four equations A x = b; each row of A is one input, b the targets [4, 1]."""
    a = torch.tensor([[1, 3, 2, -1], [5, 2, 1, -2], [0, 1, 2, 4], [1, 1, -1, -3]], dtype=torch.float32)
    b = torch.tensor([[9], [4], [24], [-12]], dtype=torch.float32)
    return a, b


def iphone_sales() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 001: (average income, price, tax) in K per country -> iPhones sold in K, five rows."""
    inputs = torch.tensor(
        [[70.0, 0.1, 0.043], [90.0, 0.8, 0.064], [80.0, 0.13, 0.058], [100.0, 0.4, 0.037], [60.0, 0.9, 0.7]]
    )
    # Shaped [5, 1] like the predictions: the seed's [5] targets broadcast against [5, 1]
    # predictions into a 5x5 difference matrix, so its "MSE" compared every row with every target.
    targets = torch.tensor([[5.0], [8.0], [12.0], [2.0], [1.0]])
    return inputs, targets


def ones_to_ones() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 002: the single example ones(4) -> ones(3)."""
    return torch.ones(1, 4), torch.ones(1, 3)


def projection_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 003: the single example [1, 2, 4] -> [1, 2, 3, 4]."""
    return torch.tensor([[1.0, 2.0, 4.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]])


def cubic_curve(points: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 004: x = linspace(-1, 1, 20) -> x^3 - x, the whole 20-vector as one example."""
    x = torch.linspace(-1, 1, points)
    return x.unsqueeze(0), (x**3 - x).unsqueeze(0)
