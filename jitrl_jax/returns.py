"""Discounted returns of an episode, by a reverse `lax.scan`.

JitRL (arXiv 2601.18510, docs/method.md section 6) stores, for every step, the
discounted return that followed it:

  G_t = sum_{j >= 0} gamma^j r_{t+j}   (i.e. G_t = r_t + gamma G_{t+1}).

Episodes are padded to a fixed length T with a mask. The mask should be a
prefix (real steps, then padding); a False step acts as an episode end:
its return is 0 and nothing after it reaches the steps before it.

`reference_returns` reproduces the authors' released code, which recomputes
returns at retrieval time and, when `substitute_zeros` is on, replaces every
*future* reward equal to 0 by the anchor step's own evaluator score (a bug,
kept switchable for comparison; off by default, even in the reference rule).

Dimension letters: T episode length.
"""

import chex
import jax
from jax import lax
import jax.numpy as jnp


def _check(name: str, x: jax.Array, t: int) -> None:
  """Raises ValueError unless x has shape [t]."""
  chex.assert_shape(
      jnp.asarray(x),
      (t,),
      custom_message=f"{name} must be [{t}] (one per step of rewards)",
      exception_type=ValueError,
  )


def discounted_returns(
    rewards: jax.Array, mask: jax.Array, *, gamma
) -> jax.Array:
  """Discounted returns G_t = m_t (r_t + gamma G_{t+1}), G_T = 0.

  Args:
    rewards: [T] float rewards.
    mask: [T] bool, True for real steps.
    gamma: [] discount in [0, 1] (may be traced).

  Returns:
    [T] float32 returns; 0 at masked steps.
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  chex.assert_rank(
      rewards,
      1,
      custom_message="rewards must be [T]; vmap for a batch of episodes",
      exception_type=ValueError,
  )
  _check("mask", mask, rewards.shape[0])
  mask = jnp.asarray(mask, bool)
  gamma = jnp.asarray(gamma, jnp.float32)

  def step(future, inputs):
    r, m = inputs
    g = jnp.where(m, r + gamma * future, 0.0)
    return g, g

  _, returns = lax.scan(step, jnp.float32(0.0), (rewards, mask), reverse=True)
  return returns


def reference_returns(
    rewards: jax.Array,
    mask: jax.Array,
    anchor_scores: jax.Array,
    *,
    gamma,
    substitute_zeros: bool = False,
) -> jax.Array:
  """Returns as the reference code computes them.

  Without substitution this is `discounted_returns`. With it:

    G_t = r_t + sum_{j > t} gamma^(j-t) r'_j,
    r'_j = anchor_scores[t] if r_j == 0 else r_j,

  so every zero reward after t counts as step t's own evaluator score. Done
  in O(T) with two reverse scans: G_t = R_t + a_t (Z_t - z_t), R the plain
  returns, z_j = [m_j and r_j == 0], Z the discounted returns of z.

  Args:
    rewards: [T] float stored per-step rewards.
    mask: [T] bool, True for real steps.
    anchor_scores: [T] float, each step's own evaluator score.
    gamma: [] discount.
    substitute_zeros: reproduce the reference's zero substitution.

  Returns:
    [T] float32 returns; 0 at masked steps.
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  plain = discounted_returns(rewards, mask, gamma=gamma)
  if not substitute_zeros:
    return plain
  t = rewards.shape[0]
  _check("anchor_scores", anchor_scores, t)
  mask = jnp.asarray(mask, bool)
  anchor = jnp.asarray(anchor_scores, jnp.float32)
  zeros = (mask & (rewards == 0)).astype(jnp.float32)
  future_zeros = discounted_returns(zeros, mask, gamma=gamma) - zeros
  return jnp.where(mask, plain + anchor * future_zeros, 0.0)
