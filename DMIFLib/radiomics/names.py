"""MIRP feature names -> pyradiomics feature names (the names the seed-001 paper reports, e.g. ``glcm_Idmn``).

MIRP names its features by IBSI abbreviation plus a settings suffix (``cm_contrast_d1_3d_avg_fbsp_w25.0``);
``MIRP_TO_PYRADIOMICS`` maps the stem before the suffix to ``(pyradiomics class, pyradiomics feature)``.
Of pyradiomics' 107 non-deprecated features of the seven classes seed 001 used, 103 are mapped; the 4 in
``NOT_COMPUTED`` are not: MIRP's features of the same name are other quantities (see docs/radiomics.md).
"""

from __future__ import annotations

import re

MIRP_TO_PYRADIOMICS: dict[str, tuple[str, str]] = {
    # shape (3D, mask only; pyradiomics computes it once, on the original image)
    "morph_volume": ("shape", "MeshVolume"),
    "morph_vol_approx": ("shape", "VoxelVolume"),
    "morph_area_mesh": ("shape", "SurfaceArea"),
    "morph_av": ("shape", "SurfaceVolumeRatio"),
    "morph_sphericity": ("shape", "Sphericity"),
    "morph_diam": ("shape", "Maximum3DDiameter"),
    "morph_pca_maj_axis": ("shape", "MajorAxisLength"),
    "morph_pca_min_axis": ("shape", "MinorAxisLength"),
    "morph_pca_least_axis": ("shape", "LeastAxisLength"),
    "morph_pca_elongation": ("shape", "Elongation"),
    "morph_pca_flatness": ("shape", "Flatness"),
    # first order: intensity statistics on the raw intensities, entropy/uniformity on the binned histogram
    "stat_energy": ("firstorder", "Energy"),
    "stat_total_energy": ("firstorder", "TotalEnergy"),
    "stat_rms": ("firstorder", "RootMeanSquared"),
    "ih_entropy": ("firstorder", "Entropy"),
    "ih_uniformity": ("firstorder", "Uniformity"),
    "stat_mean": ("firstorder", "Mean"),
    "stat_var": ("firstorder", "Variance"),
    "stat_skew": ("firstorder", "Skewness"),
    "stat_kurt": ("firstorder", "Kurtosis"),
    "stat_median": ("firstorder", "Median"),
    "stat_min": ("firstorder", "Minimum"),
    "stat_max": ("firstorder", "Maximum"),
    "stat_p10": ("firstorder", "10Percentile"),
    "stat_p90": ("firstorder", "90Percentile"),
    "stat_iqr": ("firstorder", "InterquartileRange"),
    "stat_range": ("firstorder", "Range"),
    "stat_mad": ("firstorder", "MeanAbsoluteDeviation"),
    "stat_rmad": ("firstorder", "RobustMeanAbsoluteDeviation"),
    # GLCM, 13 directions at distance 1, features averaged over directions (IBSI "3D average")
    "cm_auto_corr": ("glcm", "Autocorrelation"),
    "cm_joint_avg": ("glcm", "JointAverage"),
    "cm_clust_prom": ("glcm", "ClusterProminence"),
    "cm_clust_shade": ("glcm", "ClusterShade"),
    "cm_clust_tend": ("glcm", "ClusterTendency"),
    "cm_contrast": ("glcm", "Contrast"),
    "cm_corr": ("glcm", "Correlation"),
    "cm_diff_avg": ("glcm", "DifferenceAverage"),
    "cm_diff_entr": ("glcm", "DifferenceEntropy"),
    "cm_diff_var": ("glcm", "DifferenceVariance"),
    "cm_energy": ("glcm", "JointEnergy"),
    "cm_joint_entr": ("glcm", "JointEntropy"),
    "cm_info_corr1": ("glcm", "Imc1"),
    "cm_info_corr2": ("glcm", "Imc2"),
    "cm_inv_diff_mom": ("glcm", "Idm"),
    "cm_inv_diff_mom_norm": ("glcm", "Idmn"),
    "cm_inv_diff": ("glcm", "Id"),
    "cm_inv_diff_norm": ("glcm", "Idn"),
    "cm_inv_var": ("glcm", "InverseVariance"),
    "cm_joint_max": ("glcm", "MaximumProbability"),
    "cm_sum_avg": ("glcm", "SumAverage"),
    "cm_sum_entr": ("glcm", "SumEntropy"),
    "cm_joint_var": ("glcm", "SumSquares"),
    # GLDM = IBSI NGLDM with distance 1 and coarseness alpha 0
    "ngl_lde": ("gldm", "SmallDependenceEmphasis"),
    "ngl_hde": ("gldm", "LargeDependenceEmphasis"),
    "ngl_glnu": ("gldm", "GrayLevelNonUniformity"),
    "ngl_dcnu": ("gldm", "DependenceNonUniformity"),
    "ngl_dcnu_norm": ("gldm", "DependenceNonUniformityNormalized"),
    "ngl_gl_var": ("gldm", "GrayLevelVariance"),
    "ngl_dc_var": ("gldm", "DependenceVariance"),
    "ngl_dc_entr": ("gldm", "DependenceEntropy"),
    "ngl_lgce": ("gldm", "LowGrayLevelEmphasis"),
    "ngl_hgce": ("gldm", "HighGrayLevelEmphasis"),
    "ngl_ldlge": ("gldm", "SmallDependenceLowGrayLevelEmphasis"),
    "ngl_ldhge": ("gldm", "SmallDependenceHighGrayLevelEmphasis"),
    "ngl_hdlge": ("gldm", "LargeDependenceLowGrayLevelEmphasis"),
    "ngl_hdhge": ("gldm", "LargeDependenceHighGrayLevelEmphasis"),
    # GLRLM, 13 directions, features averaged over directions
    "rlm_sre": ("glrlm", "ShortRunEmphasis"),
    "rlm_lre": ("glrlm", "LongRunEmphasis"),
    "rlm_glnu": ("glrlm", "GrayLevelNonUniformity"),
    "rlm_glnu_norm": ("glrlm", "GrayLevelNonUniformityNormalized"),
    "rlm_rlnu": ("glrlm", "RunLengthNonUniformity"),
    "rlm_rlnu_norm": ("glrlm", "RunLengthNonUniformityNormalized"),
    "rlm_r_perc": ("glrlm", "RunPercentage"),
    "rlm_gl_var": ("glrlm", "GrayLevelVariance"),
    "rlm_rl_var": ("glrlm", "RunVariance"),
    "rlm_rl_entr": ("glrlm", "RunEntropy"),
    "rlm_lgre": ("glrlm", "LowGrayLevelRunEmphasis"),
    "rlm_hgre": ("glrlm", "HighGrayLevelRunEmphasis"),
    "rlm_srlge": ("glrlm", "ShortRunLowGrayLevelEmphasis"),
    "rlm_srhge": ("glrlm", "ShortRunHighGrayLevelEmphasis"),
    "rlm_lrlge": ("glrlm", "LongRunLowGrayLevelEmphasis"),
    "rlm_lrhge": ("glrlm", "LongRunHighGrayLevelEmphasis"),
    # GLSZM, 26-connected zones in 3D
    "szm_sze": ("glszm", "SmallAreaEmphasis"),
    "szm_lze": ("glszm", "LargeAreaEmphasis"),
    "szm_glnu": ("glszm", "GrayLevelNonUniformity"),
    "szm_glnu_norm": ("glszm", "GrayLevelNonUniformityNormalized"),
    "szm_zsnu": ("glszm", "SizeZoneNonUniformity"),
    "szm_zsnu_norm": ("glszm", "SizeZoneNonUniformityNormalized"),
    "szm_z_perc": ("glszm", "ZonePercentage"),
    "szm_gl_var": ("glszm", "GrayLevelVariance"),
    "szm_zs_var": ("glszm", "ZoneVariance"),
    "szm_zs_entr": ("glszm", "ZoneEntropy"),
    "szm_lgze": ("glszm", "LowGrayLevelZoneEmphasis"),
    "szm_hgze": ("glszm", "HighGrayLevelZoneEmphasis"),
    "szm_szlge": ("glszm", "SmallAreaLowGrayLevelEmphasis"),
    "szm_szhge": ("glszm", "SmallAreaHighGrayLevelEmphasis"),
    "szm_lzlge": ("glszm", "LargeAreaLowGrayLevelEmphasis"),
    "szm_lzhge": ("glszm", "LargeAreaHighGrayLevelEmphasis"),
    # NGTDM, 26-neighbourhood at distance 1
    "ngt_coarseness": ("ngtdm", "Coarseness"),
    "ngt_contrast": ("ngtdm", "Contrast"),
    "ngt_busyness": ("ngtdm", "Busyness"),
    "ngt_complexity": ("ngtdm", "Complexity"),
    "ngt_strength": ("ngtdm", "Strength"),
}
NOT_COMPUTED: dict[str, str] = {
    "shape_Maximum2DDiameterSlice": "MIRP's morph_max_2d_diam_z is the longest run of region voxels along z, "
                                    "not the largest mesh-vertex distance in an axial plane",
    "shape_Maximum2DDiameterColumn": "MIRP's morph_max_2d_diam_y: longest run of region voxels along y",
    "shape_Maximum2DDiameterRow": "MIRP's morph_max_2d_diam_x: longest run of region voxels along x",
    "glcm_MCC": "MIRP fills Haralick's Q matrix only where the GLCM is non-zero (4-27 % off on brain1)",
}

_SETTINGS_SUFFIX = re.compile(r"_(?:d\d[\d.]*|a\d[\d.]*|2\.5d|[23]d|fbsp|fbs|fbn)(?=_|$)")


def mirp_stem(column: str) -> str | None:
    """The ``MIRP_TO_PYRADIOMICS`` key of a MIRP output column, or None when the column is not mapped.

    Shape and statistics columns carry no suffix; texture columns end in settings such as ``_d1``, ``_a0.0``,
    ``_3d_avg`` and ``_fbsp_w25.0``, cut at the first of them.
    """
    if column in MIRP_TO_PYRADIOMICS:
        return column
    stem = _SETTINGS_SUFFIX.split(column, maxsplit=1)[0]
    return stem if stem in MIRP_TO_PYRADIOMICS and stem != column else None
