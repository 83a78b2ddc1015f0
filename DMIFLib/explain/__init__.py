"""Explanations of a prediction: saliency maps (Captum) on the slices and on the reference (T1C) grid."""

from DMIFLib.explain.attribution import METHODS, gradcam_layer, slice_saliency
from DMIFLib.explain.saliency import saliency_volume
from DMIFLib.explain.volume import CropGeometry, crop_geometry, slices_to_volume

__all__ = ["METHODS", "CropGeometry", "crop_geometry", "gradcam_layer", "saliency_volume", "slice_saliency",
           "slices_to_volume"]
