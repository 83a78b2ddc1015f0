"""Public data layouts → cohort cases: BraTS family (:mod:`.brats`), TCIA LGG-1p19qDeletion."""
