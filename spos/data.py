"""Datasets for supernet training and search: digits, CIFAR-10, any ImageFolder.

Three splits, as in the SPOS paper:

- ``train``: the training images minus ``search_val``, with augmentation;
- ``search_val``: ``search_val_per_class`` images per class carved out of the
  training set with a fixed seed (class-balanced), without augmentation;
  candidates are scored on it during the search;
- ``test``: the dataset's own validation split, untouched, for final numbers.

Augmentation (random crop with zero padding, optional horizontal flip) draws
its randomness from a generator seeded by (seed, epoch, sample index), not
from the global RNG: a sample looks the same whatever the worker count, the
rank, or where a resumed run restarts.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader, Dataset, Subset

from spos.fields import parse_fields

DATASETS = ("digits", "cifar10", "imagefolder")

# Per-channel statistics used for normalization.
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The digits "original test split": a fixed stratified 20%, independent of any seed option.
_DIGITS_TEST_FRACTION, _DIGITS_TEST_SEED = 0.2, 0


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared.

    ``root`` is required for ``imagefolder`` (holding ``train/`` and ``val/``)
    and ``cifar10`` (torchvision's folder; ``download: true`` fetches it).
    ``hflip`` defaults to on, except for digits (a mirrored 2 is no 2).
    ``crop_padding`` defaults to ``input_size // 8`` (4 at 32x32, as for CIFAR).
    """

    dataset: str = "digits"
    root: Path | None = None
    download: bool = False
    input_size: int = 32
    in_channels: int = 3
    search_val_per_class: int = 50
    split_seed: int = 0
    augment: bool = True
    hflip: bool | None = None
    crop_padding: int | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset: unknown dataset {self.dataset!r}; expected one of: {', '.join(DATASETS)}")
        if self.dataset in ("imagefolder", "cifar10") and self.root is None:
            raise ValueError(f"data.root: required for dataset {self.dataset!r}")
        for name in ("input_size", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("search_val_per_class", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name}: expected a non-negative integer, got {getattr(self, name)}")
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ValueError(f"data.crop_padding: expected a non-negative integer, got {self.crop_padding}")

    @property
    def flips(self) -> bool:
        return self.hflip if self.hflip is not None else self.dataset != "digits"

    @property
    def padding(self) -> int:
        return self.crop_padding if self.crop_padding is not None else self.input_size // 8

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["root"] = str(self.root) if self.root is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None, where: str = "data") -> DataConfig:
        """Validate a mapping (e.g. a YAML ``data:`` section); a relative ``root``
        resolves against ``base_dir`` (the config file's folder)."""
        values = parse_fields(cls, data, where)
        if values.get("root") is not None:
            root = Path(values["root"]).expanduser()
            values["root"] = (base_dir / root if base_dir is not None and not root.is_absolute() else root).resolve()
        return cls(**values)


@dataclass(frozen=True)
class Preprocessing:
    """How a stored image becomes the network's input at test time (no augmentation).

    What a deployed network needs beside its weights: `spos export` writes it into
    ``export.json`` and into the ONNX file's metadata, because a caller who feeds raw
    pixels, or normalizes with other statistics, gets wrong answers without any error.
    """

    pixel_scale: float  # stored pixel values are divided by this, to [0, 1]
    resize: str  # how an image reaches input_size x input_size
    channels: str  # what the input channels hold, in order
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "formula": "(pixel / pixel_scale - mean) / std, per channel; NCHW float32",
            "pixel_scale": self.pixel_scale, "resize": self.resize, "channels": self.channels,
            "mean": list(self.mean), "std": list(self.std),
        }


def _image_file_preprocessing(cfg: DataConfig, mean: Sequence[float], std: Sequence[float]) -> Preprocessing:
    """What `PILSource` and `TensorSource` do to 8-bit RGB images (files, or CIFAR-10's arrays)."""
    size = cfg.input_size
    grey = cfg.in_channels == 1
    return Preprocessing(
        pixel_scale=255.0,
        resize=(f"shorter side to {size} px (bilinear, antialiased), then centre crop to {size}x{size}; "
                f"images already {size}x{size} are left as they are"),
        channels="grey: mean of R, G, B" if grey else "R, G, B",
        mean=tuple(mean), std=tuple(std),
    )


@dataclass
class DataSplits:
    train: Dataset
    search_val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    input_size: int
    class_names: tuple[str, ...] = field(default=())
    preprocessing: Preprocessing | None = None


# ---- samples and augmentation ------------------------------------------------------


class SeededAugment:
    """Random crop (zero padding) + optional horizontal flip from an explicit generator."""

    def __init__(self, size: int, padding: int, flip: bool) -> None:
        self.size, self.padding, self.flip = size, padding, flip

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.padding:
            image = F.pad(image, (self.padding,) * 4)
            slack = image.shape[-1] - self.size
            top, left = (int(v) for v in torch.randint(0, slack + 1, (2,), generator=generator))
            image = image[..., top : top + self.size, left : left + self.size]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(-1)
        return image


class ImageDataset(Dataset):
    """Samples of ``source`` (index -> (float image in [0, 1], label)), optionally
    augmented, then normalized. Set ``epoch`` before iterating to change the draw."""

    def __init__(
        self,
        source: Callable[[int], tuple[torch.Tensor, int]],
        length: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: SeededAugment | None = None,
        seed: int = 0,
    ) -> None:
        self.source, self.length = source, length
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.source(index)
        if self.augment is not None:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, index))
            image = self.augment(image, generator)
        return (image - self.mean) / self.std, label


def derive_seed(*values: int | str) -> int:
    """A 63-bit seed from a seed and labels (``derive_seed(seed, "sampler")``); stable
    across processes and runs, unlike ``hash``."""
    digest = hashlib.blake2b(",".join(map(str, values)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Select the augmentation draw of ``epoch`` (through `Subset` wrappers)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if isinstance(dataset, ImageDataset):
        dataset.epoch = epoch


def unaugmented(dataset: Dataset) -> Dataset:
    """The same samples as ``dataset`` (an `ImageDataset`, maybe inside `Subset` wrappers)
    without augmentation: the training images as a network is tested on them."""
    if isinstance(dataset, Subset):
        return Subset(unaugmented(dataset.dataset), dataset.indices)
    if isinstance(dataset, ImageDataset):
        plain = copy.copy(dataset)
        plain.augment = None
        return plain
    raise TypeError(f"expected an ImageDataset or a Subset of one, got {type(dataset).__name__}")


# ---- splits --------------------------------------------------------------------


def balanced_holdout(labels: Sequence[int], per_class: int, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (rest, holdout) with ``per_class`` holdout images of every class."""
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    holdout: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) <= per_class:
            raise ValueError(
                f"data.search_val_per_class: {per_class} images of class {label} requested, "
                f"but the training split has only {len(members)}; expected fewer"
            )
        order = torch.randperm(len(members), generator=generator).tolist()
        holdout += [members[j] for j in order[:per_class]]
    held = set(holdout)
    return [i for i in range(len(labels)) if i not in held], sorted(holdout)


def _to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> ``channels`` by repetition, RGB -> grey by averaging; else unchanged."""
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return image.expand(channels, -1, -1).contiguous()
    if channels == 1:
        return image.mean(0, keepdim=True)
    raise ValueError(f"data.in_channels: cannot turn {image.shape[0]}-channel images into {channels} channels")


class TensorSource:
    """Samples from an in-memory image tensor (N, C, H, W): float in [0, 1], or uint8 (0..255)."""

    def __init__(self, images: torch.Tensor, labels: Sequence[int], channels: int) -> None:
        self.images, self.labels, self.channels = images, list(labels), channels

    def __call__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        if image.dtype == torch.uint8:
            image = image.float().div_(255)
        return _to_channels(image, self.channels), self.labels[i]


# Small datasets (CIFAR-sized ImageFolders) are decoded once into memory: re-decoding
# every PNG every epoch costs more CPU than a small network's training step.
_DECODE_IN_MEMORY_BYTES = 2 * 1024**3


def _decoded(source: "PILSource", count: int) -> TensorSource | "PILSource":
    """``source`` decoded once into a uint8 tensor, when that fits in `_DECODE_IN_MEMORY_BYTES`."""
    size = source.size * source.size * source.channels * count
    if size > _DECODE_IN_MEMORY_BYTES:
        return source
    images = torch.empty((count, source.channels, source.size, source.size), dtype=torch.uint8)
    labels = []
    for i in range(count):
        image, label = source(i)
        images[i] = image.mul(255).round_().to(torch.uint8)
        labels.append(label)
    return TensorSource(images, labels, source.channels)


class PILSource:
    """Samples decoded to PIL by ``loader`` (a path or array in, an image out), resized if needed."""

    def __init__(self, samples: Sequence[tuple[Any, int]], loader: Callable[[Any], Any], cfg: DataConfig) -> None:
        self.samples, self.loader = samples, loader
        self.size, self.channels = cfg.input_size, cfg.in_channels

    def __call__(self, i: int) -> tuple[torch.Tensor, int]:
        item, label = self.samples[i]
        image = TF.to_tensor(self.loader(item))
        if image.shape[-2:] != (self.size, self.size):
            image = TF.center_crop(TF.resize(image, self.size, antialias=True), self.size)
        return _to_channels(image, self.channels), label


@dataclass
class _Raw:
    """A dataset before splitting and normalization."""

    train: Callable[[int], tuple[torch.Tensor, int]]
    train_labels: list[int]
    test: Callable[[int], tuple[torch.Tensor, int]]
    test_labels: list[int]
    preprocessing: Preprocessing
    classes: tuple[str, ...]


def _digits(cfg: DataConfig) -> _Raw:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    # Resized once, up front: 1797 small images fit in memory at any size used here.
    images = F.interpolate(images, size=(cfg.input_size, cfg.input_size), mode="bilinear", align_corners=False)
    images = images.clamp_(0, 1)
    labels = [int(y) for y in digits.target]
    train_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=_DIGITS_TEST_FRACTION, random_state=_DIGITS_TEST_SEED, stratify=labels
    )
    train_images = images[train_idx]
    # Statistics of the resized training images (resizing changes the spread).
    mean, std = (float(train_images.mean()),) * cfg.in_channels, (float(train_images.std()),) * cfg.in_channels
    train_labels, test_labels = [labels[i] for i in train_idx], [labels[i] for i in test_idx]
    preprocessing = Preprocessing(
        pixel_scale=16.0,  # scikit-learn's digits are 8x8 grey levels 0..16
        resize=f"8x8 to {cfg.input_size}x{cfg.input_size}, bilinear (align_corners false), clamped to [0, 1]",
        channels="grey" if cfg.in_channels == 1 else f"grey, repeated to {cfg.in_channels} channels",
        mean=mean, std=std,
    )
    return _Raw(
        TensorSource(train_images, train_labels, cfg.in_channels), train_labels,
        TensorSource(images[test_idx], test_labels, cfg.in_channels), test_labels,
        preprocessing, tuple(map(str, range(10))),
    )


def _imagefolder(cfg: DataConfig) -> _Raw:
    from torchvision.datasets import ImageFolder

    assert cfg.root is not None
    if not cfg.root.is_dir():
        raise FileNotFoundError(f"data.root: folder not found: {cfg.root}")
    splits = {}
    for split in ("train", "val"):
        folder = cfg.root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"data.root: {cfg.root} has no {split}/ folder; expected {split}/<class>/<image>")
        splits[split] = ImageFolder(str(folder))
    train, val = splits["train"], splits["val"]
    if train.classes != val.classes:
        raise ValueError(f"data.root: train/ and val/ of {cfg.root} have different class folders")
    # Ten classes: most likely a CIFAR-10 subset; otherwise natural images at large.
    mean, std = (_CIFAR10_MEAN, _CIFAR10_STD) if len(train.classes) == 10 else (_IMAGENET_MEAN, _IMAGENET_STD)
    if cfg.in_channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return _Raw(
        _decoded(PILSource(train.samples, train.loader, cfg), len(train.samples)), list(train.targets),
        _decoded(PILSource(val.samples, val.loader, cfg), len(val.samples)), list(val.targets),
        _image_file_preprocessing(cfg, mean, std), tuple(train.classes),
    )


def _cifar10(cfg: DataConfig) -> _Raw:
    from torchvision.datasets import CIFAR10

    assert cfg.root is not None
    try:
        train = CIFAR10(str(cfg.root), train=True, download=cfg.download)
        test = CIFAR10(str(cfg.root), train=False, download=cfg.download)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted."
        raise FileNotFoundError(
            f"data.root: no CIFAR-10 found in {cfg.root}; set data.download: true to fetch it"
        ) from None
    mean, std = (_CIFAR10_MEAN, _CIFAR10_STD) if cfg.in_channels == 3 else ((0.4734,), (0.2516,))

    def source(ds) -> TensorSource | PILSource:
        if ds.data.shape[1:3] == (cfg.input_size, cfg.input_size):  # already decoded: (N, H, W, 3) uint8
            return TensorSource(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), ds.targets, cfg.in_channels)
        return PILSource([(img, int(y)) for img, y in zip(ds.data, ds.targets)], TF.to_pil_image, cfg)

    return _Raw(source(train), list(train.targets), source(test), list(test.targets),
                _image_file_preprocessing(cfg, mean, std), tuple(train.classes))


def load_data(cfg: DataConfig, seed: int = 0) -> DataSplits:
    """Build the three splits; ``seed`` selects the augmentation draws (not the split)."""
    raw = {"digits": _digits, "imagefolder": _imagefolder, "cifar10": _cifar10}[cfg.dataset](cfg)
    augment = SeededAugment(cfg.input_size, cfg.padding, cfg.flips) if cfg.augment else None
    mean, std = raw.preprocessing.mean, raw.preprocessing.std
    train_all = ImageDataset(raw.train, len(raw.train_labels), mean, std, augment, seed)
    plain_train = ImageDataset(raw.train, len(raw.train_labels), mean, std)
    rest, holdout = balanced_holdout(raw.train_labels, cfg.search_val_per_class, cfg.split_seed)
    return DataSplits(
        train=Subset(train_all, rest),
        search_val=Subset(plain_train, holdout),
        test=ImageDataset(raw.test, len(raw.test_labels), mean, std),
        num_classes=len(raw.classes),
        in_channels=cfg.in_channels,
        input_size=cfg.input_size,
        class_names=raw.classes,
        preprocessing=raw.preprocessing,
    )


def load_data_for_head(cfg: DataConfig, space_name: str, num_classes: int, seed: int = 0) -> DataSplits:
    """`load_data`, refusing data whose class count differs from the classifier head's.

    The count is only known once the dataset is read (an ImageFolder's class folders), so
    this is checked here rather than when the config loads, as input size and channels are.
    """
    splits = load_data(cfg, seed=seed)
    if splits.num_classes != num_classes:
        raise ValueError(
            f"data: the {cfg.dataset} dataset has {splits.num_classes} classes, space {space_name!r} has "
            f"num_classes {num_classes}; for this data set num_classes: {splits.num_classes} in a copy of the "
            f"space file, or point data.root at the dataset the space was made for"
        )
    return splits


def fixed_batches(
    dataset: Dataset, num_batches: int, batch_size: int, seed: int, what: str = "fixed_batches"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` batches of distinct random samples, drawn with ``seed`` and held in memory.

    The same arguments always give the same tensors, so every candidate of a
    search is recalibrated / scored on identical images. ``what`` names the settings the two
    counts came from, for the error a too small split gives.
    """
    if num_batches < 1 or batch_size < 1:
        raise ValueError(f"{what}: expected positive batch count and size, got {num_batches} x {batch_size}")
    needed = num_batches * batch_size
    if needed > len(dataset):
        raise ValueError(f"{what}: {num_batches} x {batch_size} = {needed} distinct images requested, "
                         f"the split has {len(dataset)}; lower either")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:needed].tolist()
    loader = DataLoader(Subset(dataset, order), batch_size=batch_size, shuffle=False, num_workers=0)
    return [(images, torch.as_tensor(labels)) for images, labels in loader]
