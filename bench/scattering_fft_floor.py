"""How fast could MultiScaleScattering be if everything but its FFTs were free? Prints, from one run:

* images/s of ``MultiScaleScattering`` (J = 2, 3, 4, 128², batch 64) and of kymatio;
* images/s of replaying only the FFTs that one forward pass makes (same calls, shapes and order, recorded by
  wrapping ``torch.fft``), i.e. the throughput ceiling of this FFT-based algorithm on this CPU;
* what that ceiling is as a multiple of kymatio.

The FFT sizes are fixed by kymatio's reflect padding (136², 144², 160² at J = 2, 3, 4) and its subsampling;
matching kymatio within rtol 1e-5 leaves no FFT out (see DMIFLib/scattering/multiscale.py).

    python bench/scattering_fft_floor.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch

from DMIFLib.scattering import KymatioMultiScaleScattering, MultiScaleScattering
from DMIFLib.scattering.benchmark import alternating_median_times, synthetic_slices


def record_fft_calls(module: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(function name, input) of every torch.fft call that ``module(x)`` makes, in order."""
    calls: list[tuple[str, torch.Tensor]] = []
    originals = {name: getattr(torch.fft, name) for name in ("fft2", "ifft2", "rfft2", "irfft2")}

    def wrap(name):
        def recorder(t, *args, **kwargs):
            calls.append((name, t.detach().clone()))
            return originals[name](t, *args, **kwargs)
        return recorder

    try:
        for name in originals:
            setattr(torch.fft, name, wrap(name))
        with torch.no_grad():
            module(x)
    finally:
        for name, function in originals.items():
            setattr(torch.fft, name, function)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = 64
    x = synthetic_slices(batch, seed=1)[:, 0]
    ours, kymatio = MultiScaleScattering(), KymatioMultiScaleScattering()
    calls = record_fft_calls(ours, x)
    functions = {name: getattr(torch.fft, name) for name, _ in calls}

    def replay() -> None:
        for name, t in calls:
            functions[name](t)

    points = sum(t.numel() for _, t in calls)
    with torch.no_grad():
        cpu = torch.device("cpu")
        t_ours, t_fft, t_ref = alternating_median_times([lambda: ours(x), replay, lambda: kymatio(x)], args.repeats,
                                                        cpu)
    print(f"threads {args.threads}, torch {torch.__version__}, batch {batch}, J = 2, 3, 4, 128x128")
    print(f"FFT calls per batch: {len(calls)}, {points / batch / 1e6:.2f} M input points per image")
    print(f"MultiScaleScattering      {batch / t_ours:7.1f} images/s   ({t_ours:.3f} s)")
    print(f"its FFTs alone            {batch / t_fft:7.1f} images/s   ({t_fft:.3f} s, {t_fft / t_ours:.0%} of ours)")
    print(f"kymatio                   {batch / t_ref:7.1f} images/s   ({t_ref:.3f} s)")
    print(f"speed-up over kymatio: ours {t_ref / t_ours:.2f}x; ceiling with free non-FFT work {t_ref / t_fft:.2f}x")


if __name__ == "__main__":
    main()
