r"""Theory lab: JitRL's update rules where every value is known exactly.

  python -m experiments.theory_lab                       # default config
  python -m experiments.theory_lab --config.quick=True   # seconds
  python -m experiments.theory_lab --out=runs/x --config.agents=4000

Many independent agents play the synthetic environments of
`jitrl_jax.envs.synthetic` (a contextual bandit over clusters of token sets and
a tree MDP with delayed reward), each with its own memory
(`jitrl_jax.memory.MemoryState`). Agents are vmapped, episodes run under
`lax.scan`, and every rule sees the same environment instances, the same prior
pi_theta and the same random draws (common random numbers: the keys depend on
the agent and the episode, never on the rule; actions are drawn by inverse CDF
from one shared uniform, so rules with equal policies take equal actions).

Rules: jitrl (the paper's closed form, through `policy.act`), reference (the
authors' code rule, through `policy.act`), gradient_kl, reinforce, ppo,
static and greedy_memory; `experiments/theory/rules.py` defines each.

The policy-gradient rules see the hidden state identity (cluster / node); the
memory rules see only the noisy token sets. Every rule writes its episodes to
its memory, so the error of the advantage estimate is measured for all.

Metrics per agent and episode:

  return     sum_t w^t r_t (w = 1 for the bandit, gamma for the tree)
  regret     sum_t w^t (max_a Q(s_t, a) - sum_a pi'(a | s_t) Q(s_t, a)): the
             expected regret of pi' against the optimal policy along the
             visited states (performance-difference lemma), so that
             E[return + regret] = optimal return
  kl         mean_t KL(pi'(. | s_t) || pi_theta(. | s_t))
  a_error    RMS over steps of the shift-invariant advantage error: with
             d_a = A_hat(s, a) - Q(s, a) over all C candidates, error^2 =
             mean_a (d_a - mean_a d)^2. The update softmax(z + beta A) sees
             A only up to a constant, and A(s, a) = Q(s, a) - V(s) for any
             baseline V, so this is the error of A_hat against the true A
             that matters to the policy. A_hat is taken with the expected
             optimism bonus (lam * alpha / |N|) for unseen actions; with no
             neighbours A_hat = 0 and the error is the spread of the true Q.
  q_error    RMS over steps and seen actions (n(s, a) > 0) of Q_hat(s, a) -
             Q(s, a).
  For the tree, Q is Q* while the memory's returns follow the behaviour
  policy, so both errors also hold that policy gap.

Sweeps (jitrl on `sweep.env`), every knob traced and vmapped with the
agents: the (memory size, k) grid (k through the prefix of the top-k_max, so
one retrieval serves every k; one compile per memory size) and beta and
lambda (riding along with the grid's default memory size).

Outputs in --out (default runs/theory_lab): results.json, regret_curves.png,
diagnostics.png (KL and A-error per episode), bias_variance.png (A-error,
Q-error and regret against k for each memory size), sweeps.png (beta,
lambda).

This file is the command line; the lab is in `experiments/theory/`: `rules`
(settings, hyperparameters, one step of each rule), `runner` (episodes and
agents, jitted), `summaries`, `sweeps` (the comparison, the sweeps,
results.json) and `plots`. The names below are its entry points.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments.theory import plots
from experiments.theory import rules
from experiments.theory import runner
from experiments.theory import summaries
from experiments.theory import sweeps

_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "configs", "theory_lab.py"
)

# The lab's entry points (for notebooks and scripts).
RULES = rules.RULES
resolve_config = runner.resolve_config
compare_rules = sweeps.compare_rules
run_sweeps = sweeps.run_sweeps
run_lab = sweeps.run_lab
summarise = summaries.summarise


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program).

  Defining them at import time would clash with other experiments' flags of
  the same name (`--config`) in any process that imports both.
  """
  global _CONFIG, _OUT
  _CONFIG = config_flags.DEFINE_config_file(
      "config", _DEFAULT_CONFIG, "Theory-lab config file."
  )
  _OUT = flags.DEFINE_string("out", "runs/theory_lab", "Output folder.")


def _print_table(results: dict) -> None:
  for env_name, by_rule in results["compare"].items():
    print(f"\n{env_name}: regret per episode (mean over agents, 95% CI)")
    print(
        f"  {'rule':14s} {'mean':>16s} {'final':>16s} {'KL':>7s} "
        f"{'A err':>7s}"
    )
    for rule, s in by_rule.items():
      a_err = s["final_a_error"]
      print(
          f"  {rule:14s} {s['mean_regret']:8.4f} +- {s['mean_regret_ci95']:.4f}"
          f" {s['final_regret']:8.4f} +- {s['final_regret_ci95']:.4f}"
          f" {s['mean_kl']:7.3f} {a_err if a_err is not None else float('nan'):7.3f}"
      )


def main(argv: Sequence[str]) -> None:
  del argv
  cfg = resolve_config(_CONFIG.value)
  start = time.perf_counter()
  print(
      f"theory lab: {cfg.agents} agents x {cfg.episodes} episodes, rules "
      f"{', '.join(cfg.rules)}, envs {', '.join(cfg.envs)}"
  )
  results = run_lab(cfg, _OUT.value)
  _print_table(summaries.json_safe(results))
  out = os.path.abspath(_OUT.value)
  print(f"\ntotal {time.perf_counter() - start:.1f} s")
  print(f"results: {os.path.join(out, 'results.json')}")
  for name in plots.PLOT_NAMES:
    print(f"plot:    {os.path.join(out, name + '.png')}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
