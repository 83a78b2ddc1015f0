"""Transfer-learning CNNs of seed 002 (Zhang et al. 2024): AlexNet, GoogLeNet, ResNet18/34/50, VGG11/16.

The layers, their order and their names are torchvision 0.28's, so torchvision's ImageNet weight files
(``resnet18-f37072fd.pth`` etc., from ``torch.hub``'s cache or any folder) load into them unchanged; the nets
themselves need only torch. torchvision is not imported: its PyPI wheel for Linux is built against CUDA torch
and does not import beside the CPU build of torch (``operator torchvision::nms does not exist``), and inside
Slicer the PyTorch extension decides which torchvision it installs (docs/methods.md).

Adaptations to the 128×128 single-channel slices, all in :class:`TransferNet`:

- input: (B, in_channels, H, W): one modality (1 channel) or M modalities as channels (the paper's FC, TC and
  FTC fusion); with ``input_size`` the slices are resized bilinearly to input_size² (224 = ImageNet's) first.
- ImageNet's first convolution (RGB) becomes an ``in_channels`` one (:func:`adapt_first_conv`).
- the 1000-class layer is replaced by one logit (P = sigmoid); GoogLeNet's auxiliary heads are left out.
- ``width_divisor`` divides every layer's width (unit tests; ImageNet weights need 1).

``load_imagenet`` reads the weights from a local file only (hospitals are offline): nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from DMIFLib.nets.config import NetConfig

ARCHS = ("alexnet", "googlenet", "resnet18", "resnet34", "resnet50", "vgg11", "vgg16")

IMAGENET_FILES: dict[str, tuple[str, ...]] = {
    "alexnet": ("alexnet-owt-7be5be79.pth",),
    "googlenet": ("googlenet-1378be20.pth",),
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "vgg11": ("vgg11-8a719046.pth",),
    "vgg16": ("vgg16-397923af.pth",),
}
"""torchvision's ImageNet-1k weight files per architecture (``IMAGENET1K_V1``; ResNet50 also ``V2``, preferred)."""

MIN_INPUT = {"alexnet": 63, "googlenet": 15, "resnet18": 1, "resnet34": 1, "resnet50": 1, "vgg11": 32, "vgg16": 32}
"""The smallest input side (px) each architecture takes (torchvision's ``min_size``)."""

WEIGHTS_URL = "https://download.pytorch.org/models/"
WEIGHTS_DIR_ENV = "DMIF_IMAGENET_WEIGHTS"
"""Environment variable: a folder with ImageNet weight files, searched before torch.hub's checkpoints folder."""

_VGG_LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}
_RESNET_BLOCKS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
                  "resnet50": ("bottleneck", (3, 4, 6, 3))}
# GoogLeNet's inception modules: (name, 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5" (3×3 in torchvision), pool proj);
# ("maxpool3",) and ("maxpool4",) are torchvision's max pools between them (3×3 stride 2, 2×2 stride 2).
_INCEPTIONS: tuple[tuple[Any, ...], ...] = (
    ("inception3a", 64, 96, 128, 16, 32, 32), ("inception3b", 128, 128, 192, 32, 96, 64), ("maxpool3",),
    ("inception4a", 192, 96, 208, 16, 48, 64), ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64), ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128), ("maxpool4",),
    ("inception5a", 256, 160, 320, 32, 128, 128), ("inception5b", 384, 192, 384, 48, 128, 128),
)
# GoogLeNet's ported weights expect torchvision's ``transform_input``: x_c · (std_c / 0.5) + (mean_c − 0.5) / 0.5
# applied to ImageNet-normalised input; it is folded into conv1 and its BatchNorm when they are loaded.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFoundError(FileNotFoundError):
    """ImageNet weights that are not on this computer; the message names the file and where to put it."""


@dataclass
class TransferConfig(NetConfig):
    """arch: one of :data:`ARCHS`; in_channels: 1 (one modality) or M (modalities as channels); input_size:
    resize the slices to input_size² before the net (None: as they come, e.g. 128²); width_divisor: every
    layer's width divided by it (1 = the published nets, needed for ImageNet weights)."""

    arch: str = "resnet18"
    in_channels: int = 1
    input_size: int | None = None
    width_divisor: int = 1


def _w(channels: int, divisor: int) -> int:
    return max(1, channels // divisor)


class _AlexNet(nn.Module):
    """torchvision's AlexNet (the "one weird trick" variant): features → 6×6 pool → classifier."""

    def __init__(self, d: int) -> None:
        super().__init__()
        c = [_w(n, d) for n in (64, 192, 384, 256, 256)]
        self.features = nn.Sequential(
            nn.Conv2d(3, c[0], 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        hidden = _w(4096, d)
        self.classifier = _classifier(c[4] * 36, hidden, dropout_first=True)
        self.feature_dim = hidden

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[:-1](torch.flatten(self.avgpool(self.features(x)), 1))

    def head(self) -> nn.Linear:
        return self.classifier[-1]


class _VGG(nn.Module):
    """torchvision's VGG without BatchNorm: convolutions → 7×7 pool → classifier."""

    def __init__(self, layout: tuple[int | str, ...], d: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            cout = _w(int(item), d)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = _w(4096, d)
        self.classifier = _classifier(cin * 49, hidden, dropout_first=False)
        self.feature_dim = hidden

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[:-1](torch.flatten(self.avgpool(self.features(x)), 1))

    def head(self) -> nn.Linear:
        return self.classifier[-1]


def _classifier(cin: int, hidden: int, dropout_first: bool) -> nn.Sequential:
    """AlexNet's (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear) or VGG's (Linear, ReLU, Dropout, ...)
    classifier with torchvision's indices; the last Linear gives one logit."""
    if dropout_first:
        return nn.Sequential(nn.Dropout(0.5), nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                             nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(hidden, 1))


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)), inplace=True)


class _Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3×3 convolution), as torchvision's."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = _downsample(cin, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)), inplace=True)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class _ResNet(nn.Module):
    """torchvision's ResNet: 7×7 stem (stride 2) + 3×3 max pool, four stages, global average pool, fc."""

    def __init__(self, arch: str, d: int) -> None:
        super().__init__()
        kind, counts = _RESNET_BLOCKS[arch]
        block = _BasicBlock if kind == "basic" else _Bottleneck
        stem = _w(64, d)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        for index, (count, width) in enumerate(zip(counts, (64, 128, 256, 512), strict=True)):
            blocks = []
            for b in range(count):
                blocks.append(block(cin, _w(width, d), 2 if b == 0 and index > 0 else 1))
                cin = _w(width, d) * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, 1)
        self.feature_dim = cin
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def head(self) -> nn.Linear:
        return self.fc


class _BasicConv2d(nn.Module):
    """GoogLeNet's convolution (no bias) + BatchNorm (eps 0.001) + ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class _Inception(nn.Module):
    """Four branches (1×1; 1×1 → 3×3; 1×1 → 3×3, torchvision's stand-in for 5×5; 3×3 max pool → 1×1),
    concatenated."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.branch1 = _BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(_BasicConv2d(cin, c3r, kernel_size=1), _BasicConv2d(c3r, c3, kernel_size=3,
                                                                                            padding=1))
        self.branch3 = nn.Sequential(_BasicConv2d(cin, c5r, kernel_size=1), _BasicConv2d(c5r, c5, kernel_size=3,
                                                                                            padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     _BasicConv2d(cin, pool, kernel_size=1))
        self.out_channels = c1 + c3 + c5 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class _GoogLeNet(nn.Module):
    """torchvision's GoogLeNet (Inception v1) without its auxiliary classifiers; dropout 0.2 before fc."""

    def __init__(self, d: int) -> None:
        super().__init__()
        c64, c192 = _w(64, d), _w(192, d)
        self.conv1 = _BasicConv2d(3, c64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = _BasicConv2d(c64, c64, kernel_size=1)
        self.conv3 = _BasicConv2d(c64, c192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        cin = c192
        self.order = []
        for name, *widths in _INCEPTIONS:
            if not widths:
                setattr(self, name, nn.MaxPool2d(3, 2, ceil_mode=True) if name == "maxpool3"
                        else nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                module = _Inception(cin, *(_w(w, d) for w in widths))
                setattr(self, name, module)
                cin = module.out_channels
            self.order.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cin, 1)
        self.feature_dim = cin
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        for name in self.order:
            x = getattr(self, name)(x)
        return self.dropout(torch.flatten(self.avgpool(x), 1))

    def head(self) -> nn.Linear:
        return self.fc


def _build_body(arch: str, divisor: int) -> nn.Module:
    if arch == "alexnet":
        return _AlexNet(divisor)
    if arch == "googlenet":
        return _GoogLeNet(divisor)
    if arch in _RESNET_BLOCKS:
        return _ResNet(arch, divisor)
    return _VGG(_VGG_LAYOUTS[arch], divisor)


class TransferNet(nn.Module):
    """A torchvision-layout CNN with an ``in_channels`` first convolution and a one-logit head.

    Input (B, in_channels, H, W) z-scored slices, H and W at least :data:`MIN_INPUT` (after ``input_size``);
    ``forward`` → logits (B,); ``features`` → the vector before the last linear layer (B, feature_dim).
    """

    kind = "transfer"

    def __init__(self, config: TransferConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TransferConfig()
        if config.arch not in ARCHS:
            raise ValueError(f"unknown transfer-learning net {config.arch!r}; choose one of {', '.join(ARCHS)}")
        if config.in_channels < 1 or config.width_divisor < 1:
            raise ValueError(f"in_channels and width_divisor must be at least 1, got {config.in_channels} and "
                             f"{config.width_divisor}")
        self.body = _build_body(config.arch, config.width_divisor)
        if config.in_channels != 3:
            _replace_first_conv(self.body, config.in_channels)
        self.feature_dim = self.body.feature_dim

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        if size is None or tuple(x.shape[-2:]) == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → (B, feature_dim): the input of the last linear layer."""
        return self.body.penultimate(self._resize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B,)."""
        return self.body.head()(self.features(x)).squeeze(1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict()}


def _replace_first_conv(body: nn.Module, in_channels: int) -> None:
    """Swap ``body``'s first (3-channel) convolution for an ``in_channels`` one with the same geometry."""
    name = _first_conv_name(body)
    parent_name, _, attribute = name.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    conv = getattr(parent, attribute)
    setattr(parent, attribute, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                         conv.padding, bias=conv.bias is not None))


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An RGB filter bank (out, 3, k, k) for ``in_channels`` inputs: (out, in_channels, k, k).

    3 channels keep the RGB filters (R, G, B = the modalities in the model's order). Otherwise every channel gets
    the filters summed over R, G, B divided by ``in_channels``: a grey slice copied to every channel gives the
    response the ImageNet net gives to that grey image as RGB.
    """
    if in_channels == 3:
        return weight.clone()
    grey = weight.sum(dim=1, keepdim=True) / in_channels
    return grey.repeat(1, in_channels, 1, 1)


def find_imagenet_weights(arch: str, weights: str | os.PathLike | None = None) -> Path:
    """The local ImageNet weight file of ``arch``: ``weights`` (a file, or a folder holding torchvision's file
    name) when given, else ``$DMIF_IMAGENET_WEIGHTS``, else torch.hub's ``checkpoints`` folder (where
    torchvision caches what it downloads). Raises :class:`WeightsNotFoundError` naming the file and the places
    looked in; nothing is downloaded."""
    names = IMAGENET_FILES[arch]
    if weights is not None and Path(weights).is_file():
        return Path(weights)
    if weights is not None and not Path(weights).is_dir():
        raise WeightsNotFoundError(f"ImageNet weights for {arch}: {weights} not found (give torchvision's file "
                                   f"{names[0]}, {WEIGHTS_URL}{names[0]}, or a folder holding it)")
    folders = ([Path(weights)] if weights is not None else
               [Path(p) for p in [os.environ.get(WEIGHTS_DIR_ENV)] if p]
               + [Path(torch.hub.get_dir()) / "checkpoints"])
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise WeightsNotFoundError(
        f"ImageNet weights for {arch} not found: put {names[0]} ({WEIGHTS_URL}{names[0]}) into "
        f"{' or '.join(str(f) for f in folders)} (or pass its path), or train without ImageNet weights")


def load_imagenet(net: TransferNet, weights: str | os.PathLike | None = None) -> Path:
    """Load torchvision's ImageNet weights into ``net`` (in place) and return the file used.

    Every layer but the one-logit head takes the file's weights; the first convolution is adapted with
    :func:`adapt_first_conv`; GoogLeNet's input transform is folded into its first layer. Raises
    :class:`WeightsNotFoundError` for a missing file and ``ValueError`` naming the file when it does not fit
    (another architecture, a damaged file) or ``net`` is width-reduced.
    """
    config = net.config
    if config.width_divisor != 1:
        raise ValueError(f"ImageNet weights need the published widths (width_divisor 1, got {config.width_divisor})")
    path = find_imagenet_weights(config.arch, weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file can fail anywhere inside the unpickler
        raise ValueError(f"{path}: not a readable weight file ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    head = {k for k, _ in net.body.head().named_parameters(prefix=_head_prefix(net))}
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.")) and k not in head}
    conv_key = f"{_first_conv_name(net.body)}.weight"
    if conv_key not in state:
        raise ValueError(f"{path}: no {conv_key} entry: not torchvision's {config.arch} weights")
    if config.arch == "googlenet":
        if "conv1.bn.running_mean" not in state:
            raise ValueError(f"{path}: no conv1.bn.running_mean entry: not torchvision's googlenet weights")
        _fold_googlenet_transform(state)
    state[conv_key] = adapt_first_conv(state[conv_key], config.in_channels)
    try:
        missing, unexpected = net.body.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        raise ValueError(f"{path}: does not fit torchvision's {config.arch}: "
                         f"{str(error).strip().splitlines()[-1].strip()}") from None
    if set(missing) != head or unexpected:
        raise ValueError(f"{path}: does not fit torchvision's {config.arch}: missing {sorted(set(missing) - head)[:3]},"
                         f" unexpected {sorted(unexpected)[:3]}")
    return path


def _head_prefix(net: TransferNet) -> str:
    return next(name for name, module in net.body.named_modules() if module is net.body.head())


def _first_conv_name(body: nn.Module) -> str:
    return next(name for name, m in body.named_modules() if isinstance(m, nn.Conv2d))


def _fold_googlenet_transform(state: dict[str, torch.Tensor]) -> None:
    """Fold torchvision's ``transform_input`` (x_c · a_c + b_c per RGB channel) into conv1 and its BatchNorm, so
    that the net takes ImageNet-normalised (≈ z-scored) input like the others; exact away from the zero-padded
    border."""
    a = torch.tensor([s / 0.5 for s in _IMAGENET_STD])
    b = torch.tensor([(m - 0.5) / 0.5 for m in _IMAGENET_MEAN])
    weight = state["conv1.conv.weight"]
    offset = (weight.sum(dim=(2, 3)) * b).sum(dim=1)  # the conv's response to the constant b, per output channel
    state["conv1.conv.weight"] = weight * a.view(1, 3, 1, 1)
    state["conv1.bn.running_mean"] = state["conv1.bn.running_mean"] - offset
