"""Transfer-learning CNNs (seed 002): torchvision's layout, input adaptation, local ImageNet weights, late fusion."""

import hashlib

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from DMIFLib.nets import build_net
from DMIFLib.nets.late_fusion import LateFusion, LateFusionNet, fit_late_fusion
from DMIFLib.nets.transfer import (
    ARCHS,
    IMAGENET_FILES,
    MIN_INPUT,
    WEIGHTS_DIR_ENV,
    TransferConfig,
    TransferNet,
    WeightsNotFoundError,
    adapt_first_conv,
    find_imagenet_weights,
    load_imagenet,
)

# SHA-256 (first 16 hex digits) of the sorted "key:[shape]" lines of torchvision 0.28.0's models (alexnet(),
# googlenet(aux_logits=False), resnet18/34/50(), vgg11/16()), the 1000-class layer left out; computed from the
# model definitions in torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl. Equal digests mean torchvision's
# ImageNet weight files load into these nets key for key.
TORCHVISION_LAYOUT = {
    "alexnet": "79645db935a1ebe2",
    "googlenet": "832a66e53bbb1b40",
    "resnet18": "c90985a1376493be",
    "resnet34": "ea35ebf08ddd2b84",
    "resnet50": "9d6b301129266817",
    "vgg11": "cc6cf58d5a1f3e0c",
    "vgg16": "6e94545e34d7818f",
}


def layout_digest(net: TransferNet) -> str:
    head = {f"{k}" for k, _ in net.body.head().named_parameters(prefix="HEAD")}
    lines = sorted(f"{k[len('body.'):]}:{list(v.shape)}" for k, v in net.state_dict().items()
                   if not k.startswith(("body.fc.", "body.classifier.6.")) and k not in head)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


@pytest.mark.parametrize("arch", ARCHS)
def test_layout_is_torchvisions(arch):
    with torch.device("meta"):  # shapes only: the full-size nets are not allocated
        net = TransferNet(TransferConfig(arch=arch, in_channels=3))
    assert layout_digest(net) == TORCHVISION_LAYOUT[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_features_and_spec_round_trip(arch):
    side = max(32, MIN_INPUT[arch])
    net = TransferNet(TransferConfig(arch=arch, in_channels=1, width_divisor=16)).eval()
    with torch.no_grad():
        logits, features = net(torch.randn(1, 1, side, side)), net.features(torch.randn(1, 1, side, side))
    assert logits.shape == (1,) and features.shape == (1, net.feature_dim)
    assert net.spec() == {"kind": "transfer", "config": {"arch": arch, "in_channels": 1, "input_size": None,
                                                         "width_divisor": 16}}
    build_net(net.spec()).load_state_dict(net.state_dict())  # strict: the same layers and shapes


def test_channel_fusion_net_rebuilds_from_its_spec():
    net = TransferNet(TransferConfig(arch="resnet18", in_channels=3, width_divisor=16)).eval()
    rebuilt = build_net(net.spec()).eval()
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_input_size_resizes_before_the_net():
    net = TransferNet(TransferConfig(arch="alexnet", in_channels=1, input_size=64, width_divisor=16)).eval()
    with torch.no_grad():
        small = net(torch.ones(1, 1, 32, 32))
        assert torch.allclose(small, net(torch.ones(1, 1, 64, 64)))  # a constant image is a constant at any size
    with pytest.raises(RuntimeError):
        TransferNet(TransferConfig(arch="alexnet", in_channels=1, width_divisor=16))(torch.ones(1, 1, 32, 32))


def test_first_conv_adaptation_keeps_the_grey_response():
    rgb = torch.randn(8, 3, 7, 7)
    grey = torch.randn(1, 1, 20, 20)
    reference = torch.nn.functional.conv2d(grey.repeat(1, 3, 1, 1), rgb)
    assert torch.allclose(torch.nn.functional.conv2d(grey, adapt_first_conv(rgb, 1)), reference, atol=1e-5)
    two = adapt_first_conv(rgb, 2)
    assert two.shape == (8, 2, 7, 7)
    assert torch.allclose(torch.nn.functional.conv2d(grey.repeat(1, 2, 1, 1), two), reference, atol=1e-5)
    assert torch.equal(adapt_first_conv(rgb, 3), rgb)


def torchvision_style_file(folder, arch="resnet18", seed=0):
    """A weight file as torchvision writes it (3-channel first convolution, 1000-class head, random values), and
    the 3-channel net it came from."""
    torch.manual_seed(seed)
    net = TransferNet(TransferConfig(arch=arch, in_channels=3))
    body = net.body
    state = {k: v.clone() for k, v in body.state_dict().items()}
    head = "fc" if arch.startswith(("resnet", "googlenet")) else "classifier.6"
    feature_dim = state[f"{head}.weight"].shape[1]
    state[f"{head}.weight"], state[f"{head}.bias"] = torch.randn(1000, feature_dim), torch.randn(1000)
    path = folder / IMAGENET_FILES[arch][0]
    torch.save(state, path)
    return path, state, net


def test_imagenet_weights_load_from_a_folder_the_env_or_the_hub_cache(tmp_path, monkeypatch):
    path, state, _ = torchvision_style_file(tmp_path)
    net = TransferNet(TransferConfig(arch="resnet18", in_channels=1))
    head_before = net.body.fc.weight.clone()
    assert load_imagenet(net, tmp_path) == path
    assert torch.equal(net.body.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(net.body.bn1.running_var, state["bn1.running_var"])
    assert torch.allclose(net.body.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(net.body.fc.weight, head_before)  # the one-logit head keeps its own initialisation
    assert find_imagenet_weights("resnet18", path) == path  # a file given directly
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert find_imagenet_weights("resnet18") == path
    monkeypatch.delenv(WEIGHTS_DIR_ENV)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    path.rename(hub / path.name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    assert find_imagenet_weights("resnet18") == hub / path.name


def test_missing_or_wrong_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"vgg16 not found: put vgg16-397923af\.pth .* into .*empty"):
        find_imagenet_weights("vgg16", tmp_path / "empty")
    with pytest.raises(WeightsNotFoundError, match=r"vgg16: .*nope\.pth not found \(give torchvision's file vgg16-"):
        find_imagenet_weights("vgg16", tmp_path / "nope.pth")
    path, _, _ = torchvision_style_file(tmp_path, "resnet18")
    wrong = tmp_path / "resnet50.pth"
    path.rename(wrong)
    with pytest.raises(ValueError, match=r"resnet50\.pth: does not fit torchvision's resnet50"):
        load_imagenet(TransferNet(TransferConfig(arch="resnet50")), wrong)
    with pytest.raises(ValueError, match="width_divisor 1"):
        load_imagenet(TransferNet(TransferConfig(arch="resnet18", width_divisor=4)), wrong)


def test_googlenet_input_transform_is_folded_into_its_first_layer(tmp_path):
    path, state, net = torchvision_style_file(tmp_path, "googlenet")
    load_imagenet(net.eval(), path)
    x = torch.randn(1, 3, 40, 40)
    scale = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) / 0.5
    shift = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) - 0.5) / 0.5
    reference = torch.nn.functional.conv2d(x * scale + shift, state["conv1.conv.weight"], stride=2, padding=3)
    reference = torch.nn.functional.batch_norm(reference, state["conv1.bn.running_mean"],
                                               state["conv1.bn.running_var"], state["conv1.bn.weight"],
                                               state["conv1.bn.bias"], eps=0.001)
    with torch.no_grad():
        ours = net.body.conv1.bn(net.body.conv1.conv(x))
    assert torch.allclose(ours[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-4)  # away from the padding


def test_late_fusion_combiners():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    p = np.clip(np.stack([0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.15, 80), rng.uniform(0, 1, 80)], axis=1), 0, 1)
    mean = fit_late_fusion("mean", p, y)
    assert np.allclose(mean.proba(p), p.mean(axis=1))
    for method in ("logistic", "svm"):
        fusion = fit_late_fusion(method, p, y)
        fused = fusion.proba(p)
        assert fused.shape == (80,) and np.all((fused > 0) & (fused < 1))
        assert roc_auc_score(y, fused) > 0.9 and abs(fusion.weights[0]) > abs(fusion.weights[1])
        again = LateFusion.from_dict(fusion.to_dict())
        assert np.array_equal(again.proba(p), fused)
        with pytest.raises(ValueError, match="both classes"):
            fit_late_fusion(method, p[:40], y[:40])
    with pytest.raises(ValueError, match="unknown late fusion"):
        fit_late_fusion("vote", p, y)


def test_late_fusion_net_uses_its_members_without_owning_them():
    members = [TransferNet(TransferConfig(arch="resnet18", width_divisor=16)).eval() for _ in range(2)]
    fusion = LateFusion("logistic", [1.5, -0.5], 0.2)
    net = LateFusionNet(members, fusion)
    assert net.state_dict() == {}
    x = torch.randn(3, 2, 32, 32)
    with torch.no_grad():
        p = torch.stack([torch.sigmoid(m(x[:, i:i + 1])) for i, m in enumerate(members)], dim=1)
        assert torch.allclose(net(x), p @ torch.tensor([1.5, -0.5]) + 0.2)
        assert net.features(x).shape == (3, 2 * members[0].feature_dim)
