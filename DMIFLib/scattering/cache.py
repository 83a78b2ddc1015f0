"""Scattering cache for MI-Net training: the coefficients of the un-augmented slices, computed once.

Augmentations that act on the coefficients are applied to the cached coefficients (``CoefficientAugment``):

* intensity ``a·x + b``: order 0 becomes ``a·S0 + b·φ̂(0)`` and orders 1–2 become ``|a|·S`` (the Morlet wavelets
  have zero mean, so a shift leaves them unchanged) — exact up to float rounding;
* horizontal flip: the coefficients of the flipped slices are cached too (``flips=True``, twice the memory) —
  exact; the flip cannot be applied to the coefficients themselves, because kymatio samples the output every
  2^J padded pixels from the top-left corner and a flip moves that grid by 2^J − 1 pixels;
* 90° rotations: applied to the coefficients (space rotated, orientations θ_l -> θ_{l+L/2}); approximate for the
  same reason — off by default; docs/performance.md gives the measured deviation.

Everything else (rotation by any angle, shear, translation, scaling, noise, gamma) changes the scattering in a
way no coefficient operation reproduces: use the on-the-fly path for those (``CoefficientAugment.unsupported``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from DMIFLib.scattering.multiscale import MultiScaleScattering


def orientation_index(J: int, L: int, max_order: int, perm: list[int]) -> torch.Tensor:
    """(K_J,) gather index: channel c of the transformed image's coefficients = channel index[c] of the original,
    when orientation l of the transformed image corresponds to orientation perm[l] of the original."""
    index = [0]
    for j1 in range(J):
        index += [1 + j1 * L + perm[t] for t in range(L)]
    if max_order >= 2:
        offset = 1 + J * L
        starts = {}
        for j1 in range(J):
            for t1 in range(L):
                for j2 in range(j1 + 1, J):
                    starts[(j1, t1, j2)] = offset
                    offset += L
        for j1 in range(J):
            for t1 in range(L):
                for j2 in range(j1 + 1, J):
                    index += [starts[(j1, perm[t1], j2)] + perm[t2] for t2 in range(L)]
    return torch.tensor(index, dtype=torch.long)


def flip_permutation(L: int) -> list[int]:
    """θ_l = (L/2 − 1 − l)·π/L -> −θ_l: l -> (L − 2 − l) mod L (a flip of either image axis)."""
    return [(L - 2 - t) % L for t in range(L)]


def rot90_permutation(L: int) -> list[int]:
    """θ_l -> θ_l ± π/2 (the same modulo π): l -> (l + L/2) mod L."""
    if L % 2:
        raise ValueError(f"90° rotations need an even number of orientations, got L={L}")
    return [(t + L // 2) % L for t in range(L)]


@dataclass(frozen=True)
class CoefficientAugment:
    """Augmentations applied to cached coefficients, each sample drawn independently.

    flip_prob: horizontal (W axis) flip, as ``RandFlip(spatial_axis=1)`` on (C, H, W) slices.
    rot90_prob: rotation by k·90°, k uniform in {1, 2, 3} (approximate, see the module docstring).
    shift / shift_prob: x + b, b ~ U(−shift, shift) (``RandShiftIntensity``).
    scale / scale_prob: x·(1 + f), f ~ U(−scale, scale) (``RandScaleIntensity``), applied after the shift.
    """

    flip_prob: float = 0.5
    rot90_prob: float = 0.0
    shift: float = 0.0
    shift_prob: float = 0.0
    scale: float = 0.0
    scale_prob: float = 0.0

    @staticmethod
    def unsupported(config) -> list[str]:
        """Names of the augmentations in a :class:`DMIFLib.training.augment.AugmentConfig` that the cache cannot
        apply (an empty list: the cache reproduces the on-the-fly scattering within float tolerance)."""
        names = []
        if config.affine_prob > 0 and (config.rotate_deg or config.translate_px or config.shear or config.scale):
            names.append("affine (rotation/translation/shear/scaling)")
        if config.gaussian_prob > 0 and config.gaussian_std > 0:
            names.append("gaussian noise")
        if config.rayleigh_prob > 0 and config.rayleigh_std > 0:
            names.append("rayleigh noise")
        if config.contrast_prob > 0 and tuple(config.gamma) != (1.0, 1.0):
            names.append("gamma contrast")
        return names

    @classmethod
    def from_config(cls, config) -> CoefficientAugment:
        """The coefficient-domain part of an ``AugmentConfig`` (flip, brightness shift, intensity scaling);
        raises ValueError when the config also asks for augmentations the cache cannot apply."""
        missing = cls.unsupported(config)
        if missing:
            raise ValueError(f"the scattering cache cannot apply {', '.join(missing)}: train on the fly")
        return cls(flip_prob=config.flip_prob, shift=config.brightness, shift_prob=config.brightness_prob,
                   scale=config.scale_intensity, scale_prob=config.contrast_prob)


class ScatteringCache:
    """Cached scattering coefficients of N slices: per J (N, 1, K_J, h, w), plus those of the flipped slices.

    Build with :meth:`build`; draw batches with :meth:`batch`. Storage is float32 by default; float16 halves the
    memory (docs/performance.md gives its deviation).
    """

    def __init__(self, scattering: MultiScaleScattering, stacked: list[torch.Tensor], n: int) -> None:
        """``stacked``: per J the coefficients of the N slices, then (when 2N rows) those of the flipped slices:
        a batch with random flips is then one gather; ``coeffs`` and ``flipped`` are views of it."""
        self.J, self.L, self.max_order = scattering.J, scattering.L, scattering.max_order
        self._stacked = stacked
        self.coeffs = [t[:n] for t in stacked]
        self.flipped = [t[n:] for t in stacked] if stacked[0].shape[0] == 2 * n else None
        self.phi0 = [scale.phi0 for scale in scattering.scales]  # φ̂(0): order 0's gain on a shift
        self._rot_index = ([orientation_index(j, self.L, self.max_order, rot90_permutation(self.L)) for j in self.J]
                           if self.L % 2 == 0 else None)

    def __len__(self) -> int:
        return self.coeffs[0].shape[0]

    @property
    def nbytes(self) -> int:
        tensors = self.coeffs + (self.flipped or [])
        return sum(t.numel() * t.element_size() for t in tensors)

    @classmethod
    @torch.no_grad()
    def build(cls, scattering_module: MultiScaleScattering, slices: torch.Tensor, batch_size: int = 64,
              progress: Callable[[dict], None] | None = None, flips: bool = True,
              dtype: torch.dtype = torch.float32, storage_device: torch.device | str | None = None,
              cancel: threading.Event | None = None) -> ScatteringCache:
        """Scatter ``slices`` (N, 1, H, W) once (on the module's device) and keep the coefficients.

        flips: also cache the W-flipped slices (exact flips; twice the time and memory).
        storage_device: where the coefficients live (default: the module's device).
        progress receives {"stage": "scattering-cache", "done": n, "total": N}; ``cancel`` is checked per batch.
        """
        if not isinstance(scattering_module, MultiScaleScattering):
            raise TypeError(f"ScatteringCache needs a MultiScaleScattering, got {type(scattering_module).__name__}")
        if slices.dim() != 4 or slices.shape[1] != 1:
            raise ValueError(f"ScatteringCache: slices must be (N, 1, H, W), got {tuple(slices.shape)}")
        buffers = list(scattering_module.buffers())
        device = buffers[0].device if buffers else torch.device("cpu")
        storage = torch.device(storage_device) if storage_device is not None else device
        n = slices.shape[0]
        parts: list[list[torch.Tensor]] = [[] for _ in scattering_module.J]
        flip_parts: list[list[torch.Tensor]] = [[] for _ in scattering_module.J]
        for start in range(0, n, batch_size):
            if cancel is not None and cancel.is_set():
                raise InterruptedError("scattering cache: cancelled")
            x = slices[start:start + batch_size].to(device=device, dtype=torch.float32)
            for i, s in enumerate(scattering_module(x)):
                parts[i].append(s.to(device=storage, dtype=dtype))
            if flips:
                for i, s in enumerate(scattering_module(torch.flip(x, dims=(-1,)))):
                    flip_parts[i].append(s.to(device=storage, dtype=dtype))
            if progress is not None:
                progress({"stage": "scattering-cache", "done": min(start + batch_size, n), "total": n})
        return cls(scattering_module, [torch.cat(p + f) for p, f in zip(parts, flip_parts, strict=True)], n)

    def batch(self, indices: torch.Tensor, augment: CoefficientAugment | None = None,
              generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Coefficients of slices ``indices`` (B,), augmented per sample: per J (B, 1, K_J, h, w) float32 on the
        storage device. The random draws use ``generator`` (a CPU generator) so that a seed replays them."""
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        b = indices.shape[0]
        device = self.coeffs[0].device
        if augment is None:
            return [c[indices.to(c.device)].float() for c in self.coeffs]

        def draw(prob: float) -> torch.Tensor:
            return torch.rand(b, generator=generator) < prob

        flip = draw(augment.flip_prob) if augment.flip_prob > 0 else torch.zeros(b, dtype=torch.bool)
        if flip.any() and self.flipped is None:
            raise ValueError("this scattering cache was built without flips=True: it cannot flip")
        rot_k = torch.where(draw(augment.rot90_prob), torch.randint(1, 4, (b,), generator=generator),
                            torch.zeros(b, dtype=torch.long)) if augment.rot90_prob > 0 else None
        shift = torch.where(draw(augment.shift_prob), (torch.rand(b, generator=generator) * 2 - 1) * augment.shift,
                            torch.zeros(b)) if augment.shift_prob > 0 else torch.zeros(b)
        factor = torch.where(draw(augment.scale_prob), 1 + (torch.rand(b, generator=generator) * 2 - 1) * augment.scale,
                             torch.ones(b)) if augment.scale_prob > 0 else torch.ones(b)
        # x -> factor·(x + shift): order 0 -> factor·S0 + factor·shift·φ̂(0); orders 1-2 -> |factor|·S.
        out = []
        f_dev, s_dev = factor.to(device), (factor * shift).to(device)
        source = (indices + flip.long() * len(self)).to(device)  # rows of the flipped slices follow the plain ones
        for i, stacked in enumerate(self._stacked):
            x = stacked[source].float()
            if rot_k is not None:
                x = self._rotate(x, rot_k.to(device), self._rot_index[i].to(device))
            gain = f_dev.abs().view(-1, 1, 1, 1, 1).expand(-1, 1, x.shape[2], 1, 1).clone()
            gain[:, :, 0] = f_dev.view(-1, 1, 1, 1)
            x = x * gain
            x[:, :, 0] += (s_dev * self.phi0[i]).view(-1, 1, 1, 1)
            out.append(x)
        return out

    @staticmethod
    def _rotate(x: torch.Tensor, k: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rotate (B, 1, K, h, w) by k[b]·90° (counter-clockwise, torch.rot90 on (H, W)) in space and orientation."""
        out = x.clone()
        for turns in (1, 2, 3):
            sel = k == turns
            if sel.any():
                y = torch.rot90(x[sel], turns, dims=(-2, -1))
                out[sel] = y[:, :, index] if turns % 2 else y
        return out
