"""The theory lab's modules; `python -m experiments.theory_lab` runs it.

rules      the lab's settings and hyperparameters, and each rule's policy
           for one step (the memory rules act through `policy.act`)
runner     episodes and agents under `lax.scan` / `vmap`, one jitted
           program per environment and shape
summaries  curves, confidence bands and errors from the per-agent metrics
sweeps     the rule comparison, the sweeps and results.json
plots      the four PNGs
"""
