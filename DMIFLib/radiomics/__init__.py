"""Radiomics features for the seed-001 method (deep learning + radiomics): pyradiomics' feature classes and names,
computed by MIRP.

- ``params``: the parameter files (``seed001_mri.json`` default, ``pyradiomics_baseline.json``), ``load_params``.
- ``extractor``: ``extract_features(image, mask, params) -> {"original_glcm_Idmn": ..., ...}``.
- ``cohort``: features of every case and modality of a cohort, the tumour label or else the ROI box as the region.
- ``agreement``: comparison with pyradiomics' stored baseline (standard library only).

Submodules are imported explicitly (``from DMIFLib.radiomics.extractor import extract_features``); MIRP itself is
imported only when features are computed.
"""
