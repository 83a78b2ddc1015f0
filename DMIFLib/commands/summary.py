"""``dmif summary``: parameter counts and feature sizes of every net at each width preset."""

from __future__ import annotations

import argparse

HELP = "Print a table of parameter counts and feature sizes for each net and width preset."

_KINDS = ("dfnet", "minet", "dmifnet", "multimodal", "resnet34", "densenet121", "vgg")
_PRESETS = ("tiny", "quick", "paper")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=_PRESETS, action="append",
                        help="width preset (repeatable; default: all of tiny, quick, paper)")
    parser.add_argument("--kind", choices=_KINDS, action="append", help="net kind (repeatable; default: all)")
    parser.add_argument("--modalities", default="t1c,t2w",
                        help="comma-separated modalities of the multimodal net (default t1c,t2w)")
    parser.add_argument("--size", type=int, default=128, help="input slice size in pixels (default 128)")
    parser.add_argument("--flops", action="store_true",
                        help="also count forward FLOPs of one slice (convolutions and matrix products; "
                             "the scattering's FFTs are not counted)")


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from DMIFLib.nets import build_net, preset_spec

    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    header = ["preset", "net", "parameters", "features"] + (["GFLOPs"] if args.flops else [])
    rows = []
    for preset in args.preset or _PRESETS:
        for kind in args.kind or _KINDS:
            spec = preset_spec(kind, preset, modalities)
            if kind == "minet":
                spec["config"]["input_shape"] = [args.size, args.size]
            elif kind in ("dmifnet", "multimodal"):
                branches = [spec["config"]] if kind == "dmifnet" else spec["config"]["branches"].values()
                for branch in branches:
                    branch["mi"]["input_shape"] = [args.size, args.size]
            net = build_net(spec).eval()
            row = [preset, kind, f"{sum(p.numel() for p in net.parameters()):,}", str(net.feature_dim)]
            if args.flops:
                channels = len(modalities) if kind == "multimodal" else 1
                counter = FlopCounterMode(display=False)
                with torch.no_grad(), counter:
                    net(torch.zeros(1, channels, args.size, args.size))
                row.append(f"{counter.get_total_flops() / 1e9:.3f}")
            rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return 0
