"""A small plain CNN for the scaling-strategy study (Dollár et al. 2021 scale CNNs in width, depth and input
resolution), its config, exact counts and synthetic images to run it on.

The network: `n_stages` stages of `depth` 3x3 convolutions (each Conv2d without bias, BatchNorm2d, ReLU);
stage i has `width * 2**i` channels and its first convolution has stride 2 (except stage 0), then global
average pooling and a Linear classifier. Counts per image, from the config alone (a test checks them
against hooks on the real model and torch's FLOP counter):
- parameters: k^2 c_in c_out per convolution, 2 c_out per BatchNorm, c n_classes + n_classes for the head;
- forward FLOPs: 2 k^2 c_in c_out h_out w_out per convolution (a multiply-add is 2 FLOPs) plus
  2 c n_classes for the head; BatchNorm, ReLU and pooling are not counted;
- activations: the elements of every convolution's output, c_out h_out w_out (the paper's definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tradeoffs.errors import ConfigError, check_positive


@dataclass
class CNNConfig:
    """A plain CNN on square images: input resolution, base width, convolutions per stage, stages."""

    name: str = "cnn-tiny"
    image_size: int = 32
    in_channels: int = 3
    width: int = 16
    depth: int = 2
    n_stages: int = 3
    n_classes: int = 10
    kernel_size: int = 3

    def __post_init__(self) -> None:
        for key in ("image_size", "in_channels", "width", "depth", "n_stages", "n_classes", "kernel_size"):
            check_positive(f"cnn.{key}", getattr(self, key))
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"cnn.kernel_size must be odd (same padding), got {self.kernel_size}")


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the network, with its input and output spatial size."""

    in_channels: int
    out_channels: int
    stride: int
    in_size: int
    out_size: int
    kernel_size: int

    @property
    def parameters(self) -> int:
        return self.kernel_size**2 * self.in_channels * self.out_channels + 2 * self.out_channels

    @property
    def flops(self) -> int:
        return 2 * self.kernel_size**2 * self.in_channels * self.out_channels * self.out_size**2

    @property
    def activations(self) -> int:
        return self.out_channels * self.out_size**2


@dataclass(frozen=True)
class CNNCounts:
    """Parameters, forward FLOPs per image and activations (convolution outputs) per image."""

    parameters: int
    flops: int
    activations: int


def conv_layers(config: CNNConfig) -> list[ConvLayer]:
    """The convolutions in order, with spatial sizes (same padding: out = floor((in - 1) / stride) + 1)."""
    layers, channels, size = [], config.in_channels, config.image_size
    for stage in range(config.n_stages):
        out_channels = config.width * 2**stage
        for index in range(config.depth):
            stride = 2 if stage > 0 and index == 0 else 1
            out_size = (size - 1) // stride + 1
            layers.append(ConvLayer(channels, out_channels, stride, size, out_size, config.kernel_size))
            channels, size = out_channels, out_size
    return layers


def count_cnn(config: CNNConfig) -> CNNCounts:
    """Exact parameters, forward FLOPs and activations per image of CNN(config), without building it."""
    layers = conv_layers(config)
    features = layers[-1].out_channels
    return CNNCounts(
        parameters=sum(layer.parameters for layer in layers) + features * config.n_classes + config.n_classes,
        flops=sum(layer.flops for layer in layers) + 2 * features * config.n_classes,
        activations=sum(layer.activations for layer in layers),
    )


class CNN(nn.Module):
    """The CNN of a CNNConfig; forward(images, labels) returns (logits, cross-entropy) like the GPT."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        blocks = []
        for layer in conv_layers(config):
            conv = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                config.kernel_size,
                layer.stride,
                config.kernel_size // 2,
                bias=False,
            )
            blocks += [conv, nn.BatchNorm2d(layer.out_channels), nn.ReLU()]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(conv_layers(config)[-1].out_channels, config.n_classes)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        logits = self.head(self.features(images).mean(dim=(2, 3)))
        return logits, None if labels is None else F.cross_entropy(logits, labels)


def synthetic_images(
    config: CNNConfig, batch_size: int, generator: torch.Generator, template_seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A batch of a learnable synthetic task: each class is a fixed smooth random pattern (seeded by
    template_seed, the same at every resolution up to interpolation) plus unit Gaussian noise; labels drawn
    from `generator`."""
    templates = torch.randn(
        config.n_classes, config.in_channels, 8, 8, generator=torch.Generator().manual_seed(template_seed)
    )
    templates = F.interpolate(templates, size=config.image_size, mode="bilinear", align_corners=False)
    labels = torch.randint(config.n_classes, (batch_size,), generator=generator)
    noise = torch.randn(batch_size, config.in_channels, config.image_size, config.image_size, generator=generator)
    return templates[labels] + noise, labels
