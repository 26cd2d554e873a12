"""Results: metrics of predictions, the runs of a profile read back and summarised, and the
report (results.md / results.csv) beside the paper's Table 1.

Layer 6. May import ``training`` and every layer below it.
"""
