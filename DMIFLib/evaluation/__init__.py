"""Evaluation: metric tables in the paper's Table 2/3 layout, `dmif evaluate`, `dmif compare`, `dmif report`."""
