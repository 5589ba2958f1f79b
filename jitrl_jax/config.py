"""One configuration type: static settings and traced hyperparameters.

A JitRL run is described by two values (docs/method.md sections 4, 5, 7, 9):

* `Settings`, a frozen dataclass of everything that fixes the traced
  program: the rule, shapes (k, view sizes, memory capacity) and switches
  (greedy, stochastic bonus). Hashable, so it can be a static argument.
* `Hyper`, a NamedTuple of the numbers that may be traced (so jitted once and
  vmapped in sweeps): beta, lam, alpha, gamma, temperature.

The policy (`policy.jitrl`), the text-game agent (`agents.make_agent`), the
ml_collections configs (`experiments/configs`) and the theory lab read their
defaults from here and nowhere else. `split_kwargs` turns the flat keyword
arguments those callers accept into the two values.

The two rules are named `RULES`: "jitrl" (the paper's closed form, the
default) and "reference" (the authors' released code).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

RULES = ("jitrl", "reference")
SCORING_LAYOUTS = ("packed", "padded")
OTHER_COMMAND_ADVANTAGES = ("zero", "expected_bonus")


class Hyper(NamedTuple):
  """Hyperparameters that may be traced (each a [] float or a Python float).

  Attributes:
    beta: strength of the update z' = z + beta * A (jitrl rule); >= 0, and 0
      is the LM's own policy.
    lam: probability of the optimism bonus for unseen candidates, in [0, 1].
    alpha: bonus numerator: the bonus is alpha / |N(s)| (both rules).
    gamma: discount of the returns written into memory, in [0, 1].
    temperature: z is divided by it before the softmax (text-game agents);
      > 0.
  """

  beta: float | jax.Array = 1.0
  lam: float | jax.Array = 0.5
  alpha: float | jax.Array = 1.0
  gamma: float | jax.Array = 0.5
  temperature: float | jax.Array = 1.0


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static settings: the rule, shapes and switches of one compiled program.

  Attributes:
    rule: "jitrl" (docs/method.md sections 5, 7) or "reference" (section 9).
    k: neighbours retrieved per state (K).
    view_weights: weight of each view in the similarity (section 3).
    view_floors: () or one minimum Jaccard per view: an entry below any
      floor is no neighbour (`similarity.weighted_jaccard`; the authors'
      web key, section 9).
    threshold: similarity threshold tau; a float, a function of the step
      within the episode, or None for the rule's default (0.0 for jitrl,
      `retrieval.reference_threshold` from `tau0` for reference).
    greedy: jitrl rule and static agent: argmax instead of a sample.
    stochastic_bonus: draw the bonus (jitrl: Bernoulli(lam); reference:
      Bernoulli(p_explore)) with the act key; False uses its expectation.
    kl_budget: jitrl rule: if set, beta is chosen per state so that
      KL(pi' || pi_theta) = kl_budget, and `Hyper.beta` is ignored.
    k_exact: reference exact tier (second cap, see `top_k_neighbours`).
    exact_threshold: similarity above which an entry is in the exact tier.
    p_explore: reference rule: None for the adaptive text-game rule, a float
      for a constant.
    web: web tasks: the reference rule's w = 1 and p_explore = 0.05 (unless
      given), and the text agents' web system prompt.
    reference_probabilities: reference rule's p: "softmax" (softmax of z
      over the candidates) or "exp" (exp z).
    tau0: first threshold of the reference schedule (threshold None).
    failure_penalty: reference rule: added to the last step's reward of a
      lost episode before the returns are computed (the authors' code gives
      -10 on its reward scale; docs/method.md section 9). The jitrl rule
      ignores it.
    similarity_method: exact Jaccard kernel (`similarity.jaccard`).
    memory_capacity: M, rows of the memory's ring buffer.
    view_sizes: set size S of each view (history, current for text games;
      history, current, task for web tasks: `batching.state_views`).
    view_ngrams: word n-gram order of each view.
    multiset: multiset (True) or set Jaccard.
    reference_filter: drop words with non-alphanumeric characters.
    memory_candidates: text-game agents: add the neighbours' actions with
      positive mean return to the candidates.
    memory_candidate_slots: at most this many are added (best mean return
      first); each slot costs T tokens of the LM pass.
    history_turns: recent (action, observation) pairs in the prompt.
    list_actions: write the candidate commands into the prompt.
    experience_lines: lines of memory written by the memory-prompt agent.
    max_observation_chars: the latest observation is cut to this length.
    prompt_buckets: allowed padded prompt lengths L; a longer prompt is cut
      to the largest (its start and its end kept).
    candidate_buckets: allowed candidate counts C; extra candidates are
      dropped.
    token_buckets: allowed candidate token lengths T; a longer candidate is
      cut to the largest.
    scoring_layout: how the candidate-scoring agents lay out the LM pass:
      "packed" (the prompt's and candidates' real tokens end to end, padded
      once to a total-length bucket, after the prompt head encoded once per
      run: `packing.packed_score_fn`) or "padded" (the prompt padded to
      `prompt_buckets` and a [C, T] grid of candidates:
      `scoring.score_candidates_fn`). Same scores; packed does less work.
      An LM without `encode_prefix` (the scripted one) scores padded.
    action_table_size: rows of the device table of memory actions' tokens.
    max_command_tokens: generating agents (`static-generate`,
      `jitrl-generate`): the most tokens the LM may write for one command,
      its terminator included (the sampler's max_new_tokens); a longer
      command is cut there and logged as truncated.
    other_command_advantage: jitrl-generate: A_0, the advantage of every
      string that is not one of the neighbours' commands: "zero" (A_0 = 0)
      or "expected_bonus" (lam * alpha / |N(s)|, the expectation of the
      optimism bonus of docs/method.md section 5; 0 with no neighbours).
  """

  rule: str = "jitrl"
  k: int = 10
  view_weights: tuple[float, ...] = (0.3, 0.7)
  view_floors: tuple[float, ...] = ()
  threshold: float | Callable[[jax.Array], jax.Array] | None = None
  greedy: bool = False
  stochastic_bonus: bool = True
  kl_budget: float | None = None
  k_exact: int = 0
  exact_threshold: float = 0.98
  p_explore: float | None = None
  web: bool = False
  reference_probabilities: str = "softmax"
  tau0: float = 0.95
  failure_penalty: float = 0.0
  similarity_method: str = "hash"
  memory_capacity: int = 16384
  view_sizes: tuple[int, ...] = (128, 256)
  view_ngrams: tuple[int, ...] = (1, 4)
  multiset: bool = True
  reference_filter: bool = False
  memory_candidates: bool = True
  memory_candidate_slots: int = 4
  history_turns: int = 3
  list_actions: bool = True
  experience_lines: int = 5
  max_observation_chars: int = 1500
  prompt_buckets: tuple[int, ...] = (256, 512, 1024)
  candidate_buckets: tuple[int, ...] = (32, 64)
  token_buckets: tuple[int, ...] = (8, 16)
  scoring_layout: str = "packed"
  action_table_size: int = 4096
  max_command_tokens: int = 12
  other_command_advantage: str = "zero"

  def __post_init__(self):
    if self.rule not in RULES:
      raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
    if self.reference_probabilities not in ("softmax", "exp"):
      raise ValueError(
          "reference_probabilities must be 'softmax' or 'exp', got "
          f"{self.reference_probabilities!r}"
      )
    if self.scoring_layout not in SCORING_LAYOUTS:
      raise ValueError(
          f"scoring_layout must be one of {SCORING_LAYOUTS}, got "
          f"{self.scoring_layout!r}"
      )
    if self.kl_budget is not None and self.rule != "jitrl":
      raise ValueError("kl_budget applies to the jitrl rule only")
    # Sequences from configs (lists) become tuples: the dataclass is hashed.
    for name in (
        "view_weights",
        "view_floors",
        "view_sizes",
        "view_ngrams",
        "prompt_buckets",
        "candidate_buckets",
        "token_buckets",
    ):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    _check_settings(self)

  @property
  def neighbour_slots(self) -> int:
    """K: neighbour slots a retrieval returns (k plus the exact tier)."""
    return self.k + (self.k_exact if self.rule == "reference" else 0)

  @property
  def explore_probability(self) -> float | None:
    """The reference rule's constant p_explore (web default 0.05), or None."""
    if self.web and self.p_explore is None:
      return 0.05
    return self.p_explore


def _concrete(x) -> list[float] | None:
  """x's values as floats, or None when it is traced (not checkable)."""
  if isinstance(x, jax.core.Tracer):
    return None
  return [float(v) for v in np.ravel(np.asarray(x))]


def check_hyper(hyper: Hyper) -> Hyper:
  """Raises ValueError on hyperparameters that have no meaning.

  Errors: beta < 0 (the KL-regularised objective needs beta >= 0; beta = 0
  is meaningful: the LM's own policy), lam outside [0, 1] (a probability),
  gamma outside [0, 1], temperature <= 0, and any NaN or infinite value.
  alpha may be any finite number (a negative alpha is a pessimism penalty for
  untried actions). Traced values are not checked.

  Args:
    hyper: the hyperparameters.

  Returns:
    `hyper` unchanged.

  Raises:
    ValueError: naming the field, its value and the allowed range.
  """
  rules = {
      "beta": (lambda v: v >= 0, ">= 0"),
      "lam": (lambda v: 0 <= v <= 1, "in [0, 1]"),
      "alpha": (lambda v: True, "finite"),
      "gamma": (lambda v: 0 <= v <= 1, "in [0, 1]"),
      "temperature": (lambda v: v > 0, "> 0"),
  }
  for name, (ok, allowed) in rules.items():
    for value in _concrete(getattr(hyper, name)) or ():
      if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be finite and {allowed}, got {value}")
  return hyper


def _check_settings(s: "Settings") -> None:
  """Raises ValueError on static settings that have no meaning."""
  if s.k < 1:
    raise ValueError(f"k must be >= 1 (neighbours retrieved), got {s.k}")
  if s.k_exact < 0:
    raise ValueError(f"k_exact must be >= 0, got {s.k_exact}")
  weights = [float(w) for w in s.view_weights]
  if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
    raise ValueError(
        f"view_weights must be finite and >= 0, got {s.view_weights}"
    )
  if sum(weights) <= 0:
    raise ValueError(
        f"view_weights must sum to a positive number, got {s.view_weights}"
    )
  floors = [float(f) for f in s.view_floors]
  if floors and (
      len(floors) != len(weights) or not all(0 <= f <= 1 for f in floors)
  ):
    raise ValueError(
        "view_floors must be () or one value in [0, 1] per view weight, got "
        f"{s.view_floors} for {len(weights)} views"
    )
  if s.kl_budget is not None and not s.kl_budget >= 0:
    raise ValueError(f"kl_budget must be >= 0, got {s.kl_budget}")
  if s.p_explore is not None and not 0 <= s.p_explore <= 1:
    raise ValueError(f"p_explore must be in [0, 1], got {s.p_explore}")
  if s.memory_capacity < 1 or min(s.view_sizes, default=0) < 1:
    raise ValueError(
        "memory_capacity and every view size must be >= 1, got "
        f"{s.memory_capacity} and {s.view_sizes}"
    )
  if len(s.view_ngrams) != len(s.view_sizes):
    raise ValueError(
        f"view_ngrams {s.view_ngrams} and view_sizes {s.view_sizes} must "
        "have one entry per view"
    )
  if s.max_command_tokens < 2:
    raise ValueError(
        "max_command_tokens must be >= 2 (one token of the command and its "
        f"terminator), got {s.max_command_tokens}"
    )
  if s.other_command_advantage not in OTHER_COMMAND_ADVANTAGES:
    raise ValueError(
        f"other_command_advantage must be one of {OTHER_COMMAND_ADVANTAGES}, "
        f"got {s.other_command_advantage!r}"
    )
  for name in ("prompt_buckets", "candidate_buckets", "token_buckets"):
    buckets = getattr(s, name)
    if not buckets or min(buckets) < 1 or list(buckets) != sorted(buckets):
      raise ValueError(f"{name} must be ascending sizes >= 1, got {buckets}")


SETTINGS_FIELDS = tuple(f.name for f in dataclasses.fields(Settings))
HYPER_FIELDS = Hyper._fields


def split_kwargs(
    kwargs: dict[str, Any], *, allow_rest: bool = False
) -> tuple[Settings, Hyper, dict[str, Any]]:
  """Flat keyword arguments -> (Settings, Hyper, the rest).

  Args:
    kwargs: names of `Settings` and `Hyper` fields (others go to the rest).
    allow_rest: if False, a name of neither raises TypeError.

  Returns:
    The settings and hyperparameters (defaults for what is not given) and a
    dict of the remaining arguments.

  Raises:
    TypeError: on an unknown name when `allow_rest` is False.
  """
  settings = {k: v for k, v in kwargs.items() if k in SETTINGS_FIELDS}
  hyper = {k: v for k, v in kwargs.items() if k in HYPER_FIELDS}
  rest = {
      k: v
      for k, v in kwargs.items()
      if k not in SETTINGS_FIELDS and k not in HYPER_FIELDS
  }
  if rest and not allow_rest:
    raise TypeError(
        f"unknown argument(s) {sorted(rest)}; expected fields of "
        f"Settings {SETTINGS_FIELDS} or Hyper {HYPER_FIELDS}"
    )
  return Settings(**settings), check_hyper(Hyper(**hyper)), rest


def as_dict(settings: Settings, hyper: Hyper) -> dict[str, Any]:
  """The flat dict of both values (for ml_collections configs and logs)."""
  out = dataclasses.asdict(settings)
  out.update(hyper._asdict())
  return out
