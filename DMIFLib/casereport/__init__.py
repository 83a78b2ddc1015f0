"""One report per predicted case (HTML and PDF): the slices with the box and the saliency overlay, the probability
with its interval and calibration note, the model's provenance, the preprocessing QA, warnings."""
