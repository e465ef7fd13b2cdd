"""`aiplane review eval`: review quality (precision, recall, cost) measured against golden findings.

Data flows one way: a dataset (`dataset.py`, or built by `sources.py` from the Martian offline
format or a team's own merged PRs) → the harness (`harness.py`) runs each case through the real
review pipeline, the single-prompt baseline or an ablation (`variants.py`) → the judge
(`judge.py`) matches findings to golden comments → metrics (`metrics.py`) → the report
(`report.py`) and the database (`store.py`).
"""
