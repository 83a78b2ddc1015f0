"""Benchmark: the paper-size Algorithm 1, timed on a few batches per stage and EXTRAPOLATED to the full run.

The paper's run: 201 training patients, 2767 slices per modality (T1C, T2W), 128 x 128, the paper preset
(paper-width nets, batch 64, every augmentation, scattering per batch, 150 epochs in each of the three stages).
Running it takes days on a CPU (docs/performance.md), so this script times ``--batches`` training batches (after
one small warm-up batch) and ``--batches`` prediction batches of each stage's net through the trainer's own
:func:`DMIFLib.training.stage.fit` and :func:`~DMIFLib.training.stage.predict_proba`, on random slices (the
time does not depend on the values), and extrapolates:

    per net: epochs x (train slices / training images/s + validation slices / prediction images/s)
    train slices = 2767 x (1 - val_fraction), validation slices = 2767 x val_fraction (the preset's 0.2)
    stage 1: DF-Net and MI-Net per modality (4 nets), stage 2: DMIF-Net per modality (2), stage 3: one net

Everything printed as "extrapolated" is such a product, not a measured full run. Not included: slice
extraction/preprocessing, the final evaluation, checkpoint writes (about a second per epoch).

    python bench/bench_paper_size.py                          # CPU, torch's threads
    python bench/bench_paper_size.py --device cuda --batches 20  # + peak GPU memory per stage
    python bench/bench_paper_size.py --processes 2             # DDP on 2 processes (2 GPUs, or gloo on the CPU)

With ``--device cuda`` it also reports the peak GPU memory of each stage (``torch.cuda.max_memory_allocated``),
and when two or more GPUs exist (or ``--processes 2``) the same stages under DistributedDataParallel on two
processes (torch.multiprocessing, one GPU each; gloo on the CPU), with the scaling over one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER_SLICES = 2767
PAPER_PATIENTS = 201
MODALITIES = ("t1c", "t2w")
STAGES = (("stage1/t1c/dfnet", "stage1", 2), ("stage1/t1c/minet", "stage1", 2), ("stage2/t1c/dmifnet", "stage2", 2),
          ("stage3/fused", "stage3", 1))
"""(the stage net timed, its stage, how many such nets Algorithm 1 trains: one per modality in stages 1-2)."""


def _nets(config) -> dict:
    """The timed stages' nets as train_cohort builds them (stage 2 from stage-1 nets, stage 3 from stage-2 nets;
    the weights do not matter for the time)."""
    from DMIFLib.nets import DMIFNet, MultimodalDMIF, preset_spec
    from DMIFLib.training.algorithm import build_stage_net

    stage1 = {f"{m}/{k}": build_stage_net(f"stage1/{m}/{k}", {}, config, MODALITIES)
              for m in MODALITIES for k in ("dfnet", "minet")}
    dropout = preset_spec("dmifnet", config.net_width)["config"].get("dropout", 0.0)
    dmif = {m: DMIFNet(stage1[f"{m}/dfnet"], stage1[f"{m}/minet"], dropout=dropout) for m in MODALITIES}
    dropout = preset_spec("multimodal", config.net_width, MODALITIES)["config"].get("dropout", 0.0)
    return {"stage1/t1c/dfnet": stage1["t1c/dfnet"], "stage1/t1c/minet": stage1["t1c/minet"],
            "stage2/t1c/dmifnet": dmif["t1c"], "stage3/fused": MultimodalDMIF(dmif, dropout=dropout)}


def _slices(n: int, channels: int, size: int, seed: int):
    from DMIFLib.training.stage import SliceSet

    g = torch.Generator().manual_seed(seed)
    return SliceSet(torch.randn(n, channels, size, size, generator=g), (torch.rand(n, generator=g) < 0.5).float())


def time_stages(device: str, batches: int, batch_size: int | None, threads: int | None) -> dict:
    """Training and prediction images/s of each stage's paper-preset net (this process, or its DDP share)."""
    from DMIFLib.training import distributed
    from DMIFLib.training.augment import AugmentConfig, SliceAugmenter
    from DMIFLib.training.device import resolve_device
    from DMIFLib.training.presets import make_config
    from DMIFLib.training.stage import fit, predict_proba

    if threads:
        torch.set_num_threads(threads)
    config = make_config("paper")
    bs = batch_size or config.batch_size
    dev = resolve_device(device)
    augment = SliceAugmenter(AugmentConfig.from_dict(config.augment), config.seed)
    rank, world = distributed.rank_and_size()
    results = {}
    for name, net in _nets(config).items():
        channels = len(MODALITIES) if name.startswith("stage3") else 1
        lr = config.lr[name.split("/")[0]]
        warm = _slices(2 * world * 2, channels, config.slice_size, 1)
        fit(net, warm, None, lr=lr, epochs=1, batch_size=2 * world * 2, device=dev, augment=augment, stage="warm")
        train = _slices(bs * batches, channels, config.slice_size, 2)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        started = time.perf_counter()
        fit(net, train, None, lr=lr, epochs=1, batch_size=bs, device=dev, augment=augment, stage=name)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_s = time.perf_counter() - started
        val = _slices(bs * batches, channels, config.slice_size, 3)
        started = time.perf_counter()
        predict_proba(net, distributed.shard(val), bs, dev)  # each process its share, as in fit's validation
        distributed.barrier()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        eval_s = time.perf_counter() - started
        row = {"train_images": len(train), "train_seconds": train_s, "train_ips": len(train) / train_s,
               "eval_images": len(val), "eval_seconds": eval_s, "eval_ips": len(val) / eval_s}
        if dev.type == "cuda":
            row["peak_gpu_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
        results[name] = row
        if rank == 0:
            print(f"  {name:<20} train {row['train_ips']:8.1f} images/s ({len(train)} in {train_s:6.1f} s)  "
                  f"predict {row['eval_ips']:8.1f} images/s" + (f"  peak GPU {row['peak_gpu_gb']:.2f} GB"
                                                                 if "peak_gpu_gb" in row else ""), flush=True)
        net.cpu()
    return results


def extrapolate(results: dict, epochs: int = 150, val_fraction: float = 0.2) -> dict:
    """Seconds of the full paper run per stage from the measured images/s (the formula in the docstring)."""
    n_train, n_val = PAPER_SLICES * (1 - val_fraction), PAPER_SLICES * val_fraction
    per_stage: dict[str, float] = {}
    for name, stage, count in STAGES:
        row = results[name]
        seconds = count * epochs * (n_train / row["train_ips"] + n_val / row["eval_ips"])
        per_stage[stage] = per_stage.get(stage, 0.0) + seconds
    return per_stage


def _ddp_worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world)})
    from DMIFLib.training import distributed

    with distributed.session(args.device) as device:
        results = time_stages(device, args.batches, args.batch_size, args.threads)
    if rank == 0:
        Path(out).write_text(json.dumps(results))


def time_ddp(args: argparse.Namespace, world: int) -> dict:
    """:func:`time_stages` on ``world`` processes (one GPU each, or gloo on the CPU); rank 0's figures, whose
    images/s count every process's images (the global batch)."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.json")
        mp.spawn(_ddp_worker, args=(world, port, args, out), nprocs=world, join=True)
        results = json.loads(Path(out).read_text())
    return results


def _describe(device: str) -> str:
    from DMIFLib.training.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} ({torch.cuda.device_count()} visible), torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} " \
           f"torch threads, torch {torch.__version__}"


def _report(title: str, results: dict) -> float:
    per_stage = extrapolate(results)
    total = sum(per_stage.values())
    print(f"{title}: EXTRAPOLATED full paper run (150 epochs x 3 stages, {PAPER_SLICES} slices x 2 modalities, "
          f"{PAPER_PATIENTS} patients) from the batches timed above:")
    for stage, seconds in per_stage.items():
        print(f"  {stage}: {seconds / 3600:8.2f} h")
    print(f"  total : {total / 3600:8.2f} h  (preprocessing, slice extraction and evaluation not included)",
          flush=True)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batches", type=int, default=2, help="timed training (and prediction) batches per net")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the paper preset's 64")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    parser.add_argument("--processes", type=int, default=None,
                        help="also time DDP on this many processes (default: 2 when two GPUs are visible)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"paper-size Algorithm 1 benchmark - {_describe(args.device)}; load average "
          f"{os.getloadavg()[0]:.1f}; {args.batches} timed batch(es) of {args.batch_size or 64} per net", flush=True)
    figures: dict = {"device": _describe(args.device), "batches": args.batches, "batch_size": args.batch_size or 64}
    single = time_stages(args.device, args.batches, args.batch_size, args.threads)
    figures["one_process"] = {"stages": single, "extrapolated_seconds": _report("one process", single)}
    processes = args.processes
    if processes is None and args.device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        processes = 2
    if processes and processes > 1:
        print(f"DistributedDataParallel on {processes} processes:", flush=True)
        ddp = time_ddp(args, processes)
        total = _report(f"{processes} processes", ddp)
        figures["ddp"] = {"processes": processes, "stages": ddp, "extrapolated_seconds": total,
                          "scaling": {name: ddp[name]["train_ips"] / single[name]["train_ips"] for name in ddp}}
        for name, factor in figures["ddp"]["scaling"].items():
            print(f"  scaling {name:<20} {factor:.2f}x training images/s over one process")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
