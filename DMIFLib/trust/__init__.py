"""How far to trust one prediction: calibrated p_fused (raw score kept), an interval per patient, and a warning
when the case lies outside the training cohort (docs/trust.md)."""
