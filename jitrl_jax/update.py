"""The JitRL update of the LM's action logits, and its KL-regularised view.

JitRL (arXiv 2601.18510, docs/method.md section 7) adds the advantage to the
LM's candidate logits, z' = z + beta * A, and acts with pi' = softmax(z').
Since pi' is proportional to pi_theta * exp(beta * A), it is the exact
maximiser over distributions pi on the candidates of

  E_{a ~ pi}[A(s, a)] - (1 / beta) * KL(pi || pi_theta),

and, for a KL budget epsilon, the beta with KL(pi' || pi_theta) = epsilon
makes pi' the solution of max E_pi[A] s.t. KL(pi || pi_theta) <= epsilon
(`beta_for_kl_budget`). beta = 0 leaves the LM's policy unchanged; beta ->
infinity puts all mass on the argmax of A among the actions pi_theta
supports; adding a constant to A shifts every logit by the same amount and
changes nothing.

Shift. `modulate_logits` computes z' = z + beta * (A - max A), the maximum
taken over the candidates that count (unmasked, logit neither -inf nor NaN,
finite A): the same softmax, but z' is z plus a non-positive term, exactly
z at the argmax of A. Unshifted, a large beta (`beta_for_kl_budget` returns
its cap, 1e6, e.g. whenever A is constant) makes beta * A so large that in
float32 z + beta * A rounds z to a grid of 1/32 or coarser and the LM's
preferences are lost even where A does not differ.

Masking: a candidate is masked when its mask entry is False or its logit is
-inf; its modulated logit is -inf and its probability exactly 0.

NaN: a NaN logit or advantage of an unmasked candidate is an error. Called
eagerly (concrete arrays), `modulate_logits` raises ValueError naming the
candidates. Under a trace (jit, vmap, scan) it cannot raise, so those
candidates are given -inf (they are never chosen, never NaN downstream) and
the condition is reported by `nan_candidates`, which `policy.act` returns as
the `nan_logits` diagnostic. NaN never passes silently into a probability.

`reference_choice` and `reference_weight` are the authors' released code's
rule (docs/method.md section 9): the action is argmax(p + w * A_hat).

Dimension letters: C candidates.
"""

from __future__ import annotations

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np


def _is_traced(*xs) -> bool:
  return any(isinstance(x, jax.core.Tracer) for x in xs)


def _float(x: jax.Array) -> jax.Array:
  x = jnp.asarray(x)
  return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _support(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
  """[C] bool: not masked and logit not -inf (NaN handled separately)."""
  support = ~jnp.isneginf(logits)
  if mask is not None:
    support = support & jnp.asarray(mask, bool)
  return support


def _advantage_shift(
    z: jax.Array, a: jax.Array, allowed: jax.Array
) -> jax.Array:
  """[] max A over allowed candidates with z not -inf / NaN and A finite.

  0 when there is none. Subtracting it from A leaves softmax(z + beta A)
  unchanged and keeps beta * (A - max) <= 0 on every such candidate.
  """
  eligible = allowed & ~jnp.isneginf(z) & ~jnp.isnan(z) & jnp.isfinite(a)
  a_max = jnp.max(jnp.where(eligible, a, -jnp.inf))
  return jnp.where(jnp.any(eligible), a_max, jnp.zeros((), a.dtype))


def _allowed(z: jax.Array, mask: jax.Array | None) -> jax.Array:
  return jnp.ones(z.shape, bool) if mask is None else jnp.asarray(mask, bool)


def nan_candidates(
    logits: jax.Array,
    advantages: jax.Array,
    beta: float | jax.Array = 1.0,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """[C] bool: unmasked candidates whose modulated logit would be NaN.

  True where the mask is True (or absent), z is not -inf, and z, A or the
  modulated logit z + beta * (A - max A) (see the module docstring) is NaN:
  for instance z = +inf with beta * A = -inf, beta = 0 with A = +-inf, or
  beta = inf at the argmax of A.

  Args:
    logits: [C] float z.
    advantages: [C] float A.
    beta: [] float beta.
    mask: [C] bool or None (all candidates real).

  Returns:
    [C] bool.
  """
  z = _float(logits)
  a = _float(advantages)
  allowed = _allowed(z, mask)
  shifted = a - _advantage_shift(z, a, allowed)
  bad = jnp.isnan(z) | jnp.isnan(a) | jnp.isnan(z + beta * shifted)
  # A -inf logit is masked: its A does not matter.
  return allowed & ~jnp.isneginf(z) & bad


def modulate_logits(
    logits: jax.Array,
    advantages: jax.Array,
    beta: float | jax.Array,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """The JitRL update z' = z + beta * A, with masked candidates at -inf.

  From JitRL (arXiv 2601.18510), docs/method.md section 7. softmax(z') is
  the maximiser of E_pi[A] - KL(pi || softmax(z)) / beta.

  The returned z' is shifted by a per-state constant, which leaves the
  softmax (and the argmax) unchanged: z' = z + beta * (A - max A), the max
  over unmasked candidates with a finite logit and a finite A. So z' = z at
  the argmax of A and z' <= z elsewhere, and a large beta (1e6 from
  `beta_for_kl_budget`) does not round z away in float32. Compare z'
  values of one state with each other, not with z + beta * A.

  Args:
    logits: [C] float z, the LM's log-probabilities (or logits) of the
      candidates; -inf marks a masked candidate.
    advantages: [C] float A(s, a).
    beta: [] float beta >= 0, the strength of the update.
    mask: [C] bool or None; False marks a masked candidate.

  Returns:
    [C] float z' = z + beta * (A - max A); -inf for masked candidates. NaN
    inputs of unmasked candidates raise ValueError eagerly; under a trace
    they give -inf and are reported by `nan_candidates` (see the module
    docstring).

  Raises:
    ValueError: on shape mismatch, or eagerly on a NaN logit / advantage.
  """
  z = _float(logits)
  a = _float(advantages).astype(z.dtype)
  if z.ndim != 1 or a.shape != z.shape:
    raise ValueError(
        f"logits and advantages must both have shape [C], got {z.shape} and "
        f"{a.shape}; vmap for a batch."
    )
  if mask is not None and jnp.shape(mask) != z.shape:
    raise ValueError(f"mask has shape {jnp.shape(mask)}, expected {z.shape}.")
  bad = nan_candidates(z, a, beta, mask=mask)
  if not _is_traced(logits, advantages, beta, mask):
    bad_np = np.asarray(bad)
    if bad_np.any():
      raise ValueError(
          "NaN logit or advantage (or z + beta * A) for unmasked candidates "
          f"{np.flatnonzero(bad_np).tolist()}: logits={np.asarray(z)}, "
          f"advantages={np.asarray(a)}, beta={beta}. Mask them or fix the "
          "scorer."
      )
  keep = _support(z, mask) & ~bad
  shifted = a - _advantage_shift(z, a, _allowed(z, mask))
  return jnp.where(keep, z + beta * shifted, -jnp.inf)


def softmax_policy(logits: jax.Array) -> jax.Array:
  """softmax over the candidates, 0 where the logit is -inf.

  Args:
    logits: [C] float, -inf for masked candidates.

  Returns:
    [C] float probabilities; all 0 when every candidate is masked (instead
    of NaN).
  """
  z = _float(logits)
  valid = ~jnp.isneginf(z)
  p = jax.nn.softmax(jnp.where(valid, z, -jnp.inf))
  return jnp.where(jnp.any(valid) & valid, p, 0.0)


def kl_divergence(pi: jax.Array, pi_theta: jax.Array) -> jax.Array:
  """KL(pi || pi_theta) = sum_a pi(a) log(pi(a) / pi_theta(a)).

  Terms with pi(a) = 0 count 0; pi(a) > 0 = pi_theta(a) gives +inf.

  Args:
    pi: [C] float probabilities.
    pi_theta: [C] float probabilities.

  Returns:
    [] float.
  """
  pi, pi_theta = _float(pi), _float(pi_theta)
  pos = pi > 0
  safe_pi = jnp.where(pos, pi, 1.0)
  terms = jnp.where(pos, pi * (jnp.log(safe_pi) - jnp.log(pi_theta)), 0.0)
  return jnp.sum(terms)


def kl_regularised_objective(
    pi: jax.Array,
    pi_theta: jax.Array,
    advantages: jax.Array,
    beta: float | jax.Array,
) -> jax.Array:
  """J(pi) = E_{a ~ pi}[A(s, a)] - KL(pi || pi_theta) / beta.

  docs/method.md section 7; softmax(z + beta * A) maximises it over the
  simplex.
  beta = 0: J = E_pi[A] when KL = 0 and -inf otherwise (the limit).

  Args:
    pi: [C] float probabilities.
    pi_theta: [C] float probabilities of the LM.
    advantages: [C] float A; ignored where pi = 0 (may be anything there).
    beta: [] float beta >= 0.

  Returns:
    [] float J.
  """
  pi = _float(pi)
  a = _float(advantages)
  expected = jnp.sum(jnp.where(pi > 0, pi * a, 0.0))
  kl = kl_divergence(pi, pi_theta)
  penalty = jnp.where(kl > 0, kl / beta, 0.0)
  return expected - penalty


def _modulated_log_policy(z, a, beta, support):
  """log softmax(z + beta A) over the support (-inf off it).

  A is shifted by its maximum over the support first, as in
  `modulate_logits`, so that beta up to beta_max does not round z away.
  """
  a = jnp.where(support, a - _advantage_shift(z, a, support), 0.0)
  zp = jnp.where(support, z + beta * a, -jnp.inf)
  return jax.nn.log_softmax(zp)


def _kl_of_beta(z, a, beta, support, log_theta):
  log_pi = _modulated_log_policy(z, a, beta, support)
  terms = jnp.where(support, jnp.exp(log_pi) * (log_pi - log_theta), 0.0)
  return jnp.sum(terms)


def max_kl(
    logits: jax.Array,
    advantages: jax.Array,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """The supremum over beta of KL(softmax(z + beta A) || softmax(z)).

  As beta -> infinity, pi' tends to pi_theta restricted to the argmax set
  T = argmax_{a in support} A(a) and renormalised, whose KL is
  -log pi_theta(T). KL(beta) increases with beta (its derivative is
  beta * Var_{pi'}(A) >= 0), so this is the largest attainable KL.

  Args:
    logits: [C] float z (-inf masked).
    advantages: [C] float A.
    mask: [C] bool or None.

  Returns:
    [] float -log pi_theta(T); 0 when A is constant on the support.
  """
  z = _float(logits)
  a = _float(advantages).astype(z.dtype)
  support = _support(z, mask) & ~jnp.isnan(z)
  log_theta = jax.nn.log_softmax(jnp.where(support, z, -jnp.inf))
  a_max = jnp.max(jnp.where(support, a, -jnp.inf))
  top = support & (a == a_max)
  return -jax.nn.logsumexp(jnp.where(top, log_theta, -jnp.inf))


def beta_for_kl_budget(
    logits: jax.Array,
    advantages: jax.Array,
    epsilon: float | jax.Array,
    *,
    mask: jax.Array | None = None,
    beta_max: float = 1e6,
    log_beta_min: float = -30.0,
    num_iterations: int = 100,
) -> jax.Array:
  """The beta whose pi' = softmax(z + beta A) has KL(pi' || pi_theta) = eps.

  With that beta, pi' solves max_pi E_pi[A] s.t. KL(pi || pi_theta) <= eps
  (docs/method.md section 7; the Lagrangian's maximiser is
  pi_theta exp(A / lambda), lambda = 1 / beta). KL(beta) is increasing in
  beta, so the root is found by bisection on log beta over
  [log_beta_min, log(beta_max)] with a fixed number of iterations
  (`lax.fori_loop`: jit and vmap friendly, no data-dependent loop count).

  Edge cases (documented behaviour):
    * eps <= 0 gives beta = 0 (pi' = pi_theta).
    * eps >= `max_kl` (the KL of pi_theta restricted to the argmax of A on
      its support) gives beta = beta_max: no finite beta reaches the budget,
      the constrained optimum is the beta -> infinity limit, and beta_max
      stands for it (a finite cap, so z + beta * A stays NaN-free). This
      includes A constant on the support (max KL = 0), where every beta
      gives pi_theta.
    * eps just below max_kl may need beta > beta_max; beta_max is returned.

  Args:
    logits: [C] float z (-inf masked).
    advantages: [C] float A.
    epsilon: [] float KL budget.
    mask: [C] bool or None.
    beta_max: cap standing for beta = infinity.
    log_beta_min: lower end of the bisection in log beta.
    num_iterations: bisection steps (100 halvings of the log-interval is
      below float64 resolution).

  Returns:
    [] float beta >= 0.
  """
  z = _float(logits)
  a = _float(advantages).astype(z.dtype)
  eps = jnp.asarray(epsilon, z.dtype)
  support = _support(z, mask) & ~jnp.isnan(z) & ~jnp.isnan(a)
  log_theta = jax.nn.log_softmax(jnp.where(support, z, -jnp.inf))

  def body(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    too_big = _kl_of_beta(z, a, jnp.exp(mid), support, log_theta) > eps
    return jnp.where(too_big, lo, mid), jnp.where(too_big, mid, hi)

  lo0 = jnp.asarray(log_beta_min, z.dtype)
  hi0 = jnp.log(jnp.asarray(beta_max, z.dtype))
  lo, hi = lax.fori_loop(0, num_iterations, body, (lo0, hi0))
  beta = jnp.exp(0.5 * (lo + hi))
  kl_cap = max_kl(z, a, mask=support)
  beta = jnp.where(eps >= kl_cap, jnp.asarray(beta_max, z.dtype), beta)
  return jnp.where(eps <= 0, jnp.zeros((), z.dtype), beta)


def reference_weight(
    episodes_done: int | jax.Array, *, web: bool = False
) -> jax.Array:
  """The reference code's advantage weight w (docs/method.md section 9).

    w = min(1 + e / 100, 1.5) for text games, w = 1 for web tasks,

  with e the number of episodes done in this process.

  Args:
    episodes_done: [] int e.
    web: True for the web-task constant w = 1.

  Returns:
    [] float32 w.
  """
  e = jnp.asarray(episodes_done, jnp.float32)
  if web:
    return jnp.ones_like(e)
  return jnp.minimum(1.0 + e / 100.0, 1.5)


def reference_choice(
    p: jax.Array,
    advantages: jax.Array,
    weight: float | jax.Array,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """The reference rule's action: argmax_a p(a) + w * A_hat(a).

  docs/method.md section 9 (no sampling). p is a probability in [0, 1] (the
  model's stated confidence, or exp of a log-probability); A_hat the
  max-normalised advantage (`advantage.reference_advantages`). Ties go to
  the lowest index.

  Args:
    p: [C] float probabilities / confidences.
    advantages: [C] float A_hat.
    weight: [] float w (`reference_weight`).
    mask: [C] bool or None; masked candidates and NaN scores are never
      chosen.

  Returns:
    [] int32 index, -1 when every candidate is masked.
  """
  score = _float(p) + weight * _float(advantages)
  valid = ~jnp.isnan(score)
  if mask is not None:
    valid = valid & jnp.asarray(mask, bool)
  index = jnp.argmax(jnp.where(valid, score, -jnp.inf)).astype(jnp.int32)
  return jnp.where(jnp.any(valid), index, jnp.int32(-1))
