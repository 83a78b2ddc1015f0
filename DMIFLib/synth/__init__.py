"""Synthetic phantom cohort (``dmif synth``): the project's built-in default data.

3-D phantom heads with a tumour, T1C and T2W (optionally FLAIR and native T1) acquisitions with realistic
nuisances, a tumour label image, and a binary label carried by the tumour's texture (oriented vs isotropic), not
by its intensity.
See docs/synthetic-data.md.
"""

from DMIFLib.synth.cohort import SynthCancelledError, synthesize_cohort
from DMIFLib.synth.patient import FILES, make_patient, read_truth_transform

__all__ = ["FILES", "SynthCancelledError", "make_patient", "read_truth_transform", "synthesize_cohort"]
