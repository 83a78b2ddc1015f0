"""DMIFLib.nets: shapes at 128×128 (tiny and paper widths), SPP formula, spec round trip, gradients, ablations."""

from __future__ import annotations

import io

import pytest
import torch

from DMIFLib.nets import (
    DFNet,
    DMIFNet,
    MINet,
    MultimodalDMIF,
    SpatialPyramidPooling,
    build_net,
    init_uniform_,
    preset_spec,
)
from DMIFLib.nets.spp import spp_eq3_bins, spp_kernel_stride

CORE_KINDS = ("dfnet", "minet", "dmifnet", "multimodal")
REFERENCE_KINDS = ("resnet34", "densenet121", "vgg")


def _input(kind: str, batch: int = 2, modalities: int = 2) -> torch.Tensor:
    return torch.randn(batch, modalities if kind == "multimodal" else 1, 128, 128)


@pytest.mark.parametrize("preset", ["tiny", "paper"])
@pytest.mark.parametrize("kind", CORE_KINDS + REFERENCE_KINDS)
def test_logits_and_features_shapes_at_128(kind: str, preset: str) -> None:
    torch.set_num_threads(1)
    net = build_net(preset_spec(kind, preset)).eval()
    x = _input(kind)
    with torch.no_grad():
        logits = net(x)
        feats = net.features(x)
    assert logits.shape == (2,)
    assert feats.shape == (2, net.feature_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()


def test_feature_sizes_follow_spp_formula() -> None:
    df = build_net(preset_spec("dfnet", "paper"))
    assert df.feature_dim == 21 * df.config.fusion_channels[-1]
    mi = build_net(preset_spec("minet", "paper"))
    assert mi.feature_dim == 21 * len(mi.config.scales) * mi.config.channels_per_scale
    dmif = build_net(preset_spec("dmifnet", "paper"))
    assert dmif.feature_dim == df.feature_dim + mi.feature_dim


@pytest.mark.parametrize(("a", "n", "kernel", "stride"), [(8, 4, 2, 2), (13, 3, 5, 4), (13, 4, 4, 3), (10, 4, 3, 2),
                                                          (32, 2, 16, 16), (7, 1, 7, 7)])
def test_spp_kernel_stride_eq3(a: int, n: int, kernel: int, stride: int) -> None:
    assert spp_kernel_stride(a, n) == (kernel, stride)
    assert spp_eq3_bins(a, n) == n


@pytest.mark.parametrize("a", [1, 3, 5, 7, 8, 10, 13, 16, 31, 32])
def test_spp_output_size_is_21_c_for_any_side(a: int) -> None:
    spp = SpatialPyramidPooling((1, 2, 4))
    x = torch.randn(3, 5, a, a + 1)
    assert spp(x).shape == (3, 21 * 5) == (3, spp.output_size(5))


def test_spp_pools_the_maximum_of_each_eq3_window() -> None:
    x = torch.arange(2 * 10 * 10, dtype=torch.float32).reshape(1, 2, 10, 10)
    out = SpatialPyramidPooling((1, 2, 4))(x)
    kernel, stride = spp_kernel_stride(10, 4)  # 3, 2
    level4 = out[0, 2 * (1 + 4) :].reshape(2, 4, 4)
    for c in range(2):
        for i in range(4):
            for j in range(4):
                window = x[0, c, i * stride : i * stride + kernel, j * stride : j * stride + kernel]
                assert level4[c, i, j] == window.max()
    assert out[0, 0] == x[0, 0].max() and out[0, 1] == x[0, 1].max()


@pytest.mark.parametrize("kind", ["dfnet", "minet", "dmifnet", *REFERENCE_KINDS])
def test_spec_round_trip_and_weights_only_load(kind: str) -> None:
    net = build_net(preset_spec(kind, "tiny")).eval()
    buffer = io.BytesIO()
    torch.save({"spec": net.spec(), "state_dict": net.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rebuilt = build_net(saved["spec"]).eval()
    rebuilt.load_state_dict(saved["state_dict"])
    assert rebuilt.spec() == net.spec()
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x))


def test_multimodal_spec_keeps_modality_order() -> None:
    spec = preset_spec("multimodal", "tiny", modalities=("t2w", "flair", "t1c"))
    net = build_net(spec)
    assert net.modalities == ("t2w", "flair", "t1c")
    assert build_net(net.spec()).spec() == spec
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(1, 2, 128, 128))


def test_scattering_filters_are_not_in_the_state_dict() -> None:
    net = build_net(preset_spec("minet", "tiny"))
    assert not [k for k in net.state_dict() if k.startswith("scattering.")]


def test_forward_from_scattering_matches_forward() -> None:
    net = build_net(preset_spec("minet", "tiny")).eval()
    x = torch.randn(2, 1, 128, 128)
    coeffs = net.scatter(x)
    assert [tuple(c.shape[-3:]) for c in coeffs] == [(81, 32, 32), (217, 16, 16), (417, 8, 8)]
    with torch.no_grad():
        torch.testing.assert_close(net.forward_from_scattering(coeffs), net(x))
        torch.testing.assert_close(net.features_from_scattering([c.squeeze(1) for c in coeffs]), net.features(x))


def test_minet_scale_subset() -> None:
    spec = preset_spec("minet", "tiny")
    spec["config"].update(scales=[2, 3], input_shape=[64, 64])
    net = build_net(spec)
    assert net.feature_dim == 21 * 2 * 4
    assert [tuple(c.shape[-3:]) for c in net.scatter(torch.randn(1, 1, 64, 64))] == [(81, 16, 16), (217, 8, 8)]
    assert net(torch.randn(1, 1, 64, 64)).shape == (1,)
    with pytest.raises(ValueError, match="divisible"):
        build_net({"kind": "minet", "config": {**spec["config"], "input_shape": [100, 100]}})


def test_minet_input_batchnorm_affine_only_in_older_configs() -> None:
    """The presets' input BatchNorm only standardises, so the loss gradient stops at the fusion conv; a config
    without the field (a model file written before it) keeps the learnable scale and shift and loads its weights."""
    net = build_net(preset_spec("minet", "tiny"))
    input_norms = [branch[0] for branch in net.scale_convs]
    assert all(isinstance(n, torch.nn.BatchNorm2d) and not n.affine for n in input_norms)
    coeffs = [c.requires_grad_() for c in net.scatter(torch.randn(2, 1, 128, 128))]
    net.forward_from_scattering(coeffs).sum().backward()
    assert all(c.grad is not None for c in coeffs)  # the standardisation itself is still differentiable
    old_config = {k: v for k, v in preset_spec("minet", "tiny")["config"].items() if k != "input_affine"}
    old = build_net({"kind": "minet", "config": old_config})
    assert all(branch[0].affine for branch in old.scale_convs)
    assert "scale_convs.0.0.weight" in old.state_dict()
    build_net({"kind": "minet", "config": old_config}).load_state_dict(old.state_dict())


def test_gradients_reach_both_dmifnet_branches() -> None:
    net = build_net(preset_spec("dmifnet", "tiny")).train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(torch.randn(4, 1, 128, 128)), torch.ones(4))
    loss.backward()
    for branch in (net.df, net.mi):
        grads = [p.grad for p in branch.parameters() if p.requires_grad and p is not branch.head[1].weight
                 and p is not branch.head[1].bias]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_dmifnet_keeps_trained_branch_weights() -> None:
    df, mi = build_net(preset_spec("dfnet", "tiny")), build_net(preset_spec("minet", "tiny"))
    before = {k: v.clone() for k, v in df.state_dict().items()}
    net = DMIFNet(df, mi)
    for k, v in net.df.state_dict().items():
        torch.testing.assert_close(v, before[k])
    multi = MultimodalDMIF({"t1c": net, "t2w": DMIFNet.from_config(net.config)})
    assert multi.modality_logits(torch.randn(2, 2, 128, 128)).shape == (2, 2)


@pytest.mark.parametrize("cls", [DFNet, MINet])
def test_gap_ablation_replaces_spp(cls) -> None:
    kind = cls.kind
    spec = preset_spec(kind, "tiny")
    spec["config"]["pooling"] = "gap"
    net = build_net(spec)
    assert not any(isinstance(m, SpatialPyramidPooling) for m in net.modules())
    spp_net = build_net(preset_spec(kind, "tiny"))
    assert spp_net.feature_dim == 21 * net.feature_dim
    assert net(torch.randn(2, 1, 128, 128)).shape == (2,)


def test_config_errors_are_clear() -> None:
    spec = preset_spec("dfnet", "tiny")
    spec["config"]["stage_inner"] = [6]
    with pytest.raises(ValueError, match="divisible by cardinality"):
        build_net(spec)
    with pytest.raises(ValueError, match="unknown configuration keys"):
        build_net({"kind": "minet", "config": {"widht": 3}})
    with pytest.raises(ValueError, match="unknown net kind"):
        build_net({"kind": "alexnet", "config": {}})


def test_init_uniform_bounds() -> None:
    conv, fc = torch.nn.Conv2d(8, 16, 3), torch.nn.Linear(40, 1)
    init_uniform_(torch.nn.Sequential(conv, fc))
    assert conv.weight.abs().max() <= (6 / (8 * 9)) ** 0.5
    assert fc.weight.abs().max() <= (6 / 41) ** 0.5
    assert conv.bias.abs().max() == 0 and fc.bias.abs().max() == 0


@pytest.mark.parametrize("kind", REFERENCE_KINDS)
def test_reference_nets_take_stacked_modalities(kind: str) -> None:
    spec = preset_spec(kind, "tiny")
    spec["config"]["in_channels"] = 2
    net = build_net(spec)
    assert net(torch.randn(2, 2, 128, 128)).shape == (2,)
    assert build_net(net.spec()).spec() == spec


def test_summary_command_prints_parameter_counts(capsys) -> None:
    from DMIFLib.cli import main

    assert main(["summary", "--preset", "tiny", "--kind", "dfnet", "--kind", "vgg", "--flops"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["preset", "net", "parameters", "features", "GFLOPs"]
    for line, kind in zip(lines[1:], ("dfnet", "vgg"), strict=True):
        net = build_net(preset_spec(kind, "tiny"))
        _, name, params, features, gflops = line.split()
        assert name == kind and params == f"{sum(p.numel() for p in net.parameters()):,}"
        assert int(features) == net.feature_dim and float(gflops) > 0


def test_fusion_heads_start_as_the_mean_of_the_branch_logits():
    from DMIFLib.nets import DMIFNet, MultimodalDMIF, build_net, preset_spec

    torch.manual_seed(0)
    df = build_net(preset_spec("dfnet", "tiny"))
    mi = build_net(preset_spec("minet", "tiny"))
    dmif = DMIFNet(df, mi).eval()
    x = torch.randn(3, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(dmif(x), (df(x) + mi(x)) / 2, rtol=1e-5, atol=1e-5)
        other = DMIFNet(build_net(preset_spec("dfnet", "tiny")), build_net(preset_spec("minet", "tiny"))).eval()
        fused = MultimodalDMIF({"t1c": dmif, "t2w": other}).eval()
        xm = torch.randn(3, 2, 128, 128)
        torch.testing.assert_close(fused(xm), fused.modality_logits(xm).mean(dim=1), rtol=1e-5, atol=1e-5)
