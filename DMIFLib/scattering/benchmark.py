"""``dmif bench``: scattering throughput (ours vs kymatio), MI-Net stage-1 epoch with vs without the scattering
cache, per-patient inference time and peak memory. Figures, not tests: targets are printed next to them.

Every figure comes from this one run, on one input, after a warm-up; times are medians of several repeats.
The inference figure is measured in a fresh Python process so that its peak RSS is that of prediction alone.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

IMAGE = 128
TARGETS = {"scattering_ratio": 5.0, "epoch_ratio": 10.0, "inference_s": 1.0, "inference_rss_gb": 1.5}


def synthetic_slices(n: int, size: int = IMAGE, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) float32 z-scored slices: a smooth head ellipse with low-frequency shading, a textured
    blob (the "tumour") and noise — realistic enough that timing does not depend on trivial content."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    out = torch.empty(n, 1, size, size)
    for i in range(n):
        a, b = 0.75 + 0.15 * torch.rand(2, generator=g)
        head = ((xx / a) ** 2 + (yy / b) ** 2 < 1).float()
        coarse = torch.nn.functional.interpolate(torch.randn(1, 1, 6, 6, generator=g), size=(size, size),
                                                 mode="bicubic", align_corners=True)[0, 0]
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([0.8, 0.8, 0.25]) + torch.tensor([-0.4, -0.4, 0.15]))
        blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))
        freq = 10 + 30 * float(torch.rand(1, generator=g))
        angle = math.pi * float(torch.rand(1, generator=g))
        texture = torch.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)))
        img = head * (1 + 0.3 * coarse + blob * (1 + 0.5 * texture)) + 0.05 * torch.randn(size, size, generator=g)
        out[i, 0] = (img - img[head > 0].mean()) / img[head > 0].std()
    return out


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in seconds (CUDA synchronised before and after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def alternating_median_times(fns: Sequence[Callable[[], object]], repeats: int, device: torch.device) -> list[float]:
    """Median wall time of each of ``fns``, run in turn ``repeats`` times after one warm-up each.

    Alternating keeps a drifting machine load (this VM's timings wander by ±20 % over minutes) out of the ratios.
    """
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        _timed(fn, device)
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            record.append(_timed(fn, device))
    return [statistics.median(record) for record in times]


@torch.no_grad()
def scattering_throughput(device: torch.device, batch: int = 64, repeats: int = 3) -> dict:
    """Images/s of MultiScaleScattering and of kymatio (one ScatteringTorch2D per J) at J = 2, 3, 4, 128²."""
    from DMIFLib.scattering import KymatioMultiScaleScattering, MultiScaleScattering

    x = synthetic_slices(batch, seed=1).to(device)
    start = time.perf_counter()
    ours = MultiScaleScattering().to(device)
    ours_build = time.perf_counter() - start
    start = time.perf_counter()
    ref = KymatioMultiScaleScattering().to(device)
    ref_build = time.perf_counter() - start
    t_ours, t_ref = alternating_median_times([lambda: ours(x), lambda: ref(x)], repeats, device)
    deviation = max(float(((a - b).abs().max() / b.abs().max()).cpu()) for a, b in zip(ours(x), ref(x), strict=True))
    return {"batch": batch, "ours_images_s": batch / t_ours, "kymatio_images_s": batch / t_ref,
            "ratio": t_ref / t_ours, "ours_build_s": ours_build, "kymatio_build_s": ref_build,
            "max_abs_diff_over_max": deviation}


def epoch_times(device: torch.device, n_slices: int = 900, preset: str = "quick", batch: int = 64,
                repeats: int = 3) -> dict:
    """One epoch of Adam steps on MI-Net (stage 1), scattering on the fly vs from the cache.

    Both paths apply the same augmentation (random W flip, brightness shift, intensity scaling): on the images
    before scattering on the fly, on the coefficients from the cache (exact, see DMIFLib.scattering.cache).
    The two epochs alternate ``repeats`` times and each time is the median, so that a slow spell of a shared
    machine does not land on one side only.
    """
    from DMIFLib.nets import build_net, preset_spec
    from DMIFLib.scattering import CoefficientAugment, ScatteringCache

    slices = synthetic_slices(n_slices, seed=2)
    labels = (torch.arange(n_slices) % 2).float()
    net = build_net(preset_spec("minet", preset)).to(device)
    augment = CoefficientAugment(flip_prob=0.5, shift=0.2, shift_prob=0.3, scale=0.1, scale_prob=0.3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch(model: torch.nn.Module, step_input: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> float:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        model.train()
        start = time.perf_counter()
        for idx in torch.randperm(n_slices, generator=g).split(batch):
            logits = step_input(idx, g)
            loss = loss_fn(logits, labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    def on_the_fly_input(model):
        def step(idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            b = len(idx)
            x = slices[idx]
            flip = torch.rand(b, generator=g) < augment.flip_prob
            shift = torch.where(torch.rand(b, generator=g) < augment.shift_prob,
                                (torch.rand(b, generator=g) * 2 - 1) * augment.shift, torch.zeros(b))
            factor = torch.where(torch.rand(b, generator=g) < augment.scale_prob,
                                 1 + (torch.rand(b, generator=g) * 2 - 1) * augment.scale, torch.ones(b))
            x = torch.where(flip.view(-1, 1, 1, 1), torch.flip(x, dims=(-1,)), x)
            x = factor.view(-1, 1, 1, 1) * (x + shift.view(-1, 1, 1, 1))
            return model(x.to(device))
        return step

    start = time.perf_counter()
    cache = ScatteringCache.build(net.scattering, slices, batch_size=batch)
    t_build = time.perf_counter() - start
    fly_net, cache_net = copy.deepcopy(net), copy.deepcopy(net)
    fly_times, cache_times = [], []
    for _ in range(repeats):
        fly_times.append(epoch(fly_net, on_the_fly_input(fly_net)))
        cache_times.append(epoch(cache_net, lambda idx, g: cache_net.forward_from_scattering(cache.batch(idx, augment,
                                                                                                          g))))
    t_fly, t_cache = statistics.median(fly_times), statistics.median(cache_times)
    return {"slices": n_slices, "preset": preset, "on_the_fly_s": t_fly, "cache_s": t_cache,
            "ratio": t_fly / t_cache, "cache_build_s": t_build, "cache_gb": cache.nbytes / 1e9}


def peak_rss_gb() -> float:
    """This process's peak resident set size in GB (10⁹ bytes).

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own address space. Not
    ``getrusage``'s ``ru_maxrss``, which survives ``exec``: a child started by a large parent (``subprocess``
    uses vfork) reports the parent's peak. Elsewhere ``ru_maxrss`` (bytes on macOS, KiB on other systems).
    """
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1e9 if sys.platform == "darwin" else maxrss * 1024 / 1e9


def _inference_child(preset: str, device: str, threads: int, repeats: int) -> None:
    """Run in a fresh process: build a T1C+T2W model, predict one 15-slice patient; print JSON."""
    import numpy as np

    from DMIFLib.allocator import tune_allocator

    tuned = tune_allocator()  # as `dmif predict` and the worker do
    torch.set_num_threads(threads)
    rss_start = peak_rss_gb()
    start = time.perf_counter()
    from DMIFLib.inference import predict_stack
    from DMIFLib.model_file import FUSED, LoadedModel
    from DMIFLib.nets import build_net, preset_spec
    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.preprocessing.slices import SliceStack

    modalities = ("t1c", "t2w")
    nets = {m: build_net(preset_spec("dmifnet", preset)).to(device).eval() for m in modalities}
    nets[FUSED] = build_net(preset_spec("multimodal", preset, modalities)).to(device).eval()
    model = LoadedModel(nets=nets, modalities=modalities, marker="benchmark", settings=PreprocessSettings(),
                        cutoff=0.5, device=torch.device(device))
    build_s = time.perf_counter() - start
    images = synthetic_slices(30, seed=3).numpy()[:, 0]
    stack = SliceStack(images={"t1c": images[:15], "t2w": images[15:]}, slice_indices=np.arange(15), slice_axis=2,
                       patient_id="benchmark")
    start = time.perf_counter()
    predict_stack(model, stack)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        predict_stack(model, stack)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak_gb = peak_rss_gb()
    print(json.dumps({"preset": preset, "build_s": build_s, "first_s": first_s, "patient_s": statistics.median(times),
                      "peak_rss_gb": peak_gb, "rss_at_start_gb": rss_start,
                      "allocator_tuned": tuned}))


def inference_figures(preset: str, device: torch.device, threads: int, repeats: int = 5) -> dict:
    """Per-patient prediction (T1C + T2W, 15 slices each; preprocessing excluded) in a fresh subprocess.

    ``patient_s`` is the median over ``repeats`` patients after the first, with the model built once (as
    ``predict_cohort`` does for a whole cohort); ``build_s`` (building the nets and their scattering filters) and
    ``first_s`` (the first patient, warm-up included) are reported separately.
    """
    code = (f"from DMIFLib.scattering.benchmark import _inference_child; "
            f"_inference_child({preset!r}, {str(device)!r}, {threads}, {repeats})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"inference benchmark ({preset}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_benchmark(device: str = "cpu", threads: int | None = None, slices: int = 900, repeats: int = 3,
                  presets: tuple[str, ...] = ("quick", "paper"), epoch_preset: str = "quick",
                  progress: Callable[[str], None] | None = None) -> dict:
    """All figures as a dict (see :func:`format_table`)."""
    from DMIFLib.allocator import allocator_tuned
    from DMIFLib.training.device import resolve_device

    dev = resolve_device(device)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    say = progress or (lambda message: None)
    results: dict = {"device": str(dev), "threads": threads, "torch": torch.__version__,
                     "allocator_tuned": allocator_tuned()}
    say("scattering throughput (ours vs kymatio)...")
    results["scattering"] = scattering_throughput(dev, repeats=repeats)
    say(f"MI-Net stage-1 epoch on {slices} slices, on the fly vs cached...")
    results["epoch"] = epoch_times(dev, n_slices=slices, preset=epoch_preset, repeats=repeats)
    results["inference"] = []
    for preset in presets:
        say(f"per-patient inference ({preset}) in a fresh process...")
        results["inference"].append(inference_figures(preset, dev, threads))
    return results


def format_table(r: dict) -> str:
    """The figures as a plain-text table with the targets."""
    s, e = r["scattering"], r["epoch"]
    rows = [
        ("scattering J=2,3,4 128², batch 64: ours", f"{s['ours_images_s']:.1f} images/s", ""),
        ("scattering: kymatio (3 × ScatteringTorch2D)", f"{s['kymatio_images_s']:.1f} images/s", ""),
        ("scattering speed-up", f"{s['ratio']:.2f}×", f"≥ {TARGETS['scattering_ratio']:.0f}×"),
        ("  max |ours − kymatio| / max |kymatio|", f"{s['max_abs_diff_over_max']:.1e}", ""),
        ("  filter construction: ours / kymatio", f"{s['ours_build_s']:.1f} s / {s['kymatio_build_s']:.1f} s", ""),
        (f"MI-Net ({e['preset']}) epoch, {e['slices']} slices, on the fly", f"{e['on_the_fly_s']:.2f} s", ""),
        ("MI-Net epoch from the cache", f"{e['cache_s']:.2f} s", ""),
        ("epoch speed-up", f"{e['ratio']:.1f}×", f"≥ {TARGETS['epoch_ratio']:.0f}×"),
        ("  cache build (once, with flips) / size", f"{e['cache_build_s']:.1f} s / {e['cache_gb']:.2f} GB", ""),
    ]
    for i in r["inference"]:
        rows += [
            (f"inference ({i['preset']}): T1C+T2W, 15 slices", f"{i['patient_s']:.3f} s",
             f"≤ {TARGETS['inference_s']:.0f} s"),
            ("  peak RSS of the prediction process", f"{i['peak_rss_gb']:.2f} GB",
             f"≤ {TARGETS['inference_rss_gb']} GB"),
            ("  (model built and loaded once, as in a batch run)", "", ""),
            ("  glibc malloc thresholds (DMIFLib.allocator)", "tuned" if i.get("allocator_tuned") else "default",
             ""),
            ("  model build / first patient incl. build", f"{i['build_s']:.1f} s / {i['build_s'] + i['first_s']:.2f} s",
             ""),
        ]
    width = max(len(a) for a, _, _ in rows)
    malloc = "tuned" if r.get("allocator_tuned") else "default"
    head = f"dmif bench — device {r['device']}, {r['threads']} threads, torch {r['torch']}, glibc malloc {malloc}"
    lines = [head, "-" * len(head)]
    lines += [f"{a:<{width}}  {b:>22}  {c}" for a, b, c in rows]
    return "\n".join(lines)
