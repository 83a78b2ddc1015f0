"""Saliency maps (DMIFLib.explain): exact inverse of the slice crop, the reference grid of a real oblique image,
and the model-randomisation sanity check (Adebayo et al. 2018) on a tiny net trained on a task with known signal."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
import torch
from scipy.stats import spearmanr

from DMIFLib.explain import crop_geometry, saliency_volume, slice_saliency, slices_to_volume
from DMIFLib.model_file import LoadedModel
from DMIFLib.nets import build_net, preset_spec
from DMIFLib.preprocessing.roi import OrientedBox
from DMIFLib.preprocessing.settings import PreprocessSettings
from DMIFLib.preprocessing.slices import extract_slices

SIZE = 32


def _tiny_spec() -> dict:
    """The tiny DMIF-Net preset on 32×32 slices (MI-Net scales 2, 3, 4 need sides divisible by 16)."""
    spec = preset_spec("dmifnet", "tiny")
    spec["config"]["mi"]["input_shape"] = [SIZE, SIZE]
    return spec


def _oblique_image(size=(12, 40, 30), spacing=(4.0, 0.9, 1.1), seed=0) -> sitk.Image:
    """Random volume, thick slices along i (slice axis 0) and a rotated direction matrix."""
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(size=size[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((-20.0, 13.0, 7.5))
    angle = np.deg2rad(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    return image


def _label_box(image: sitk.Image, lo, hi) -> OrientedBox:
    """The box of the voxels lo..hi (inclusive, (i, j, k)) of ``image``."""
    label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(image)
    array = sitk.GetArrayViewFromImage(label).copy()
    array[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    return OrientedBox.from_label(mask)


def test_slices_to_volume_inverts_the_crop_exactly():
    """A box of exactly S×S in-plane voxels, stretch mode: the resize is the identity, so putting the slices back
    gives the volume's own values inside the box and zeros elsewhere (any axis or row/column mix-up breaks it)."""
    image = _oblique_image(size=(12, 40, 36))
    lo, hi = (3, 5, 2), (8, 5 + SIZE - 1, 2 + SIZE - 1)
    stack = extract_slices({"t1c": image}, _label_box(image, lo, hi), size=SIZE, resize_mode="stretch")
    assert stack.slice_axis == 0
    geometry = crop_geometry(stack, image)
    assert geometry.cols == (lo[1], hi[1] + 1) and geometry.rows == (lo[2], hi[2] + 1)
    back = sitk.GetArrayFromImage(slices_to_volume(stack.images["t1c"], stack, image))
    original = sitk.GetArrayFromImage(image)
    inside = np.zeros(back.shape, dtype=bool)
    inside[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    np.testing.assert_allclose(back[inside], original[inside], atol=1e-5)
    assert not back[~inside].any()


def test_square_crop_round_trip_and_box():
    """Square mode on a non-square box (real context beyond the box on one side): slices → volume → matches the
    volume inside the box up to the resize's smoothing; with ``clip_to_box`` nothing lies outside the box."""
    image = sitk.SmoothingRecursiveGaussian(_oblique_image(seed=1), 2.0)
    lo, hi = (2, 10, 4), (9, 30, 15)
    stack = extract_slices({"t1c": image}, _label_box(image, lo, hi), size=SIZE, resize_mode="square")
    back = sitk.GetArrayFromImage(slices_to_volume(stack.images["t1c"], stack, image))
    original = sitk.GetArrayFromImage(image)
    inside = np.zeros(back.shape, dtype=bool)
    inside[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    assert np.corrcoef(back[inside], original[inside])[0, 1] > 0.95
    assert not back[~inside].any()
    wide = sitk.GetArrayFromImage(slices_to_volume(stack.images["t1c"], stack, image, clip_to_box=False))
    assert np.count_nonzero(wide) > np.count_nonzero(back)  # the square window's extra context


def test_wrong_reference_grid_is_refused():
    image = _oblique_image()
    stack = extract_slices({"t1c": image}, _label_box(image, (2, 10, 4), (9, 30, 15)), size=SIZE)
    other = sitk.Resample(image, (image.GetSize()[0], 20, 20), sitk.Transform(), sitk.sitkLinear,
                          image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    with pytest.raises(ValueError, match="reference image"):
        slices_to_volume(stack.images["t1c"], stack, other)


def test_gradcam_needs_a_df_net():
    spec = preset_spec("minet", "tiny")
    spec["config"]["input_shape"] = [SIZE, SIZE]
    with pytest.raises(ValueError, match="no DF-Net branch"):
        slice_saliency(build_net(spec), np.zeros((1, SIZE, SIZE), np.float32), "gradcam")
    with pytest.raises(ValueError, match="unknown saliency method"):
        slice_saliency(build_net(spec), np.zeros((1, SIZE, SIZE), np.float32), "lime")


@pytest.mark.shared_data
def test_saliency_volume_on_real_oblique_t2_grid(shared_data):
    """The TCGA T2 has an oblique direction matrix and a 224×256×26 grid: the Grad-CAM volume has exactly its
    size, spacing, origin and direction, and its non-zero voxels lie inside the box (through a LoadedModel)."""
    reference = sitk.ReadImage(str(shared_data / "TCGA-FG-6692" / "native" / "TCGA-FG-6692_t2.nii.gz"),
                               sitk.sitkFloat32)
    assert not np.allclose(np.asarray(reference.GetDirection()).reshape(3, 3), np.eye(3))
    lo, hi = (90, 100, 10), (140, 135, 15)
    stack = extract_slices({"t2w": reference}, _label_box(reference, lo, hi), size=SIZE)
    stack.images["t2w"] = (stack.images["t2w"] - stack.images["t2w"].mean()) / stack.images["t2w"].std()
    torch.manual_seed(0)
    net = build_net(_tiny_spec()).eval()
    model = LoadedModel(nets={"t2w": net, "fused": net}, modalities=("t2w",), marker="test", cutoff=0.5,
                        settings=PreprocessSettings(slice_size=SIZE), device=torch.device("cpu"))
    volume = saliency_volume(model, stack, reference, "t2w", method="gradcam")
    assert volume.GetSize() == reference.GetSize()
    assert volume.GetSpacing() == reference.GetSpacing()
    assert volume.GetOrigin() == reference.GetOrigin()
    assert volume.GetDirection() == reference.GetDirection()
    array = sitk.GetArrayFromImage(volume)
    nonzero = np.argwhere(array != 0)[:, ::-1]  # (i, j, k)
    assert len(nonzero) > 0
    assert np.all(nonzero >= lo) and np.all(nonzero <= hi)


# -- model-randomisation sanity check ---------------------------------------------------------------------

def _blob_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 32, 32) noise; label 1 ⇔ a bright Gaussian blob (σ 2 px) at a random place; returns images, labels,
    and the blob masks (radius 4 px; empty for label 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = rng.normal(size=(n, SIZE, SIZE)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.float32)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i in np.flatnonzero(labels):
        cy, cx = rng.integers(6, SIZE - 6, size=2)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        images[i] += 3.0 * np.exp(-d2 / (2 * 2.0 ** 2))
        masks[i] = d2 <= 16
    return images, labels, masks


@pytest.fixture(scope="module")
def trained_and_random():
    """A tiny DMIF-Net trained for a few seconds on the blob task, and the same architecture re-initialised."""
    torch.manual_seed(0)
    net = build_net(_tiny_spec())
    images, labels, _ = _blob_task(128, seed=0)
    x, y = torch.from_numpy(images)[:, None], torch.from_numpy(labels)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for step in range(60):
        batch = torch.from_numpy(np.random.default_rng(step).choice(len(x), 32, replace=False))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    test_images, test_labels, test_masks = _blob_task(16, seed=1)
    with torch.no_grad():
        logits = net(torch.from_numpy(test_images)[:, None]).numpy()
    accuracy = float(np.mean((logits > 0) == (test_labels > 0.5)))
    torch.manual_seed(123)
    randomised = build_net(_tiny_spec()).eval()
    positives = test_labels > 0.5
    return net, randomised, test_images[positives], test_masks[positives], accuracy


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "occlusion", "integrated_gradients"])
def test_model_randomisation_changes_the_maps(trained_and_random, method):
    """Adebayo et al. (2018): a saliency method that explains the model must give clearly different maps for a
    model with re-initialised weights. Spearman rank correlation of |map| per positive test slice, mean below 0.5;
    and the trained model's map ranks the blob (the known signal) higher than the randomised model's map does."""
    net, randomised, images, masks, accuracy = trained_and_random
    assert accuracy >= 0.8, f"the tiny net did not learn the blob task (test accuracy {accuracy:.2f})"
    options = {"occlusion": {"window": 8, "stride": 4}, "gradcam": {"gradcam_relu": False}}.get(method, {})
    trained_maps = np.abs(slice_saliency(net, images, method, **options))
    random_maps = np.abs(slice_saliency(randomised, images, method, **options))
    rho = np.array([spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(trained_maps, random_maps, strict=True)])
    assert np.all(np.isfinite(rho)), "a constant saliency map has no rank correlation"
    blob_trained = np.mean([m[k].mean() / (m.mean() + 1e-12) for m, k in zip(trained_maps, masks, strict=True)])
    blob_random = np.mean([m[k].mean() / (m.mean() + 1e-12) for m, k in zip(random_maps, masks, strict=True)])
    print(f"{method}: mean Spearman rho trained vs randomised {rho.mean():.3f}; blob/mean saliency trained "
          f"{blob_trained:.2f}, randomised {blob_random:.2f}; test accuracy {accuracy:.2f}")
    assert rho.mean() < 0.5
    if method != "gradcam":
        assert blob_trained > blob_random


@pytest.mark.slow
def test_model_randomisation_changes_the_written_saliency_volume(trained_and_random, tmp_path):
    """The same check on what ``dmif predict --saliency`` writes: the positive test images as the slices of a box
    on an oblique reference grid, each model's Grad-CAM (signed) volume through ``saliency_volumes`` and
    ``write_saliency``; the rank correlation of |saliency| over the box's voxels, trained vs randomised, is < 0.5."""
    from DMIFLib.explain.files import saliency_volumes, write_saliency

    net, randomised, images, _, _ = trained_and_random
    reference = _oblique_image(size=(len(images) + 4, SIZE + 6, SIZE + 4))
    lo, hi = (2, 3, 1), (1 + len(images), 2 + SIZE, SIZE)  # exactly S×S in-plane: the resize is the identity
    stack = extract_slices({"t1c": reference}, _label_box(reference, lo, hi), size=SIZE, resize_mode="stretch")
    stack.images["t1c"] = images
    maps = {}
    for name, model_net in (("trained", net), ("randomised", randomised)):
        model = LoadedModel(nets={"t1c": model_net, "fused": model_net}, modalities=("t1c",), marker="blob",
                            cutoff=0.5, settings=PreprocessSettings(slice_size=SIZE), device=torch.device("cpu"))
        path = write_saliency(saliency_volumes(model, stack, reference, "gradcam", gradcam_relu=False), name,
                              tmp_path, "gradcam")["t1c"]
        assert path.name == f"{name}_t1c.nii.gz"
        maps[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    inside = np.zeros(maps["trained"].shape, dtype=bool)
    inside[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    rho = spearmanr(np.abs(maps["trained"][inside]), np.abs(maps["randomised"][inside])).statistic
    print(f"saliency volume (Grad-CAM, signed): Spearman rho trained vs randomised over the box {rho:.3f}")
    assert np.isfinite(rho) and rho < 0.5
