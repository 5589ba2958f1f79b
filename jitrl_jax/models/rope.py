"""Rotary position embeddings (Su et al., 2021) and their context scalings.

A head of size Dh is rotated, pair of coordinates ``(i, i + Dh/2)`` by pair,
by the angle ``position * inv_freq[i]`` ("rotate half" convention, as Hugging
Face's Llama). The default frequencies are ``theta^(-2i/Dh)``; checkpoints
trained for a longer context than their pre-training rescale them:

* ``linear`` (position interpolation, Chen et al., 2023): every frequency is
  divided by ``factor``. Gemma 3's global layers use it.
* ``llama3`` (Llama 3.1 / 3.2): wavelengths ``2 pi / f`` longer than
  ``original_max_position_embeddings / low_freq_factor`` are divided by
  ``factor``, those shorter than ``original / high_freq_factor`` are kept,
  and the band between is interpolated smoothly.
* ``factors``: each frequency is divided by its own factor, as given
  (llama.cpp's ``rope_freqs`` tensor: how GGUF files carry Llama 3.1
  scaling, precomputed).

The frequencies follow transformers' ``modeling_rope_utils``
(``_compute_linear_scaling_rope_parameters``,
``_compute_llama3_parameters``), computed here in float64.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

ROPE_SCALING_KINDS = ("linear", "llama3", "factors")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """How the rotary frequencies are rescaled for a longer context.

  Attributes:
    kind: ``"linear"``, ``"llama3"`` or ``"factors"``.
    factor: the context extension factor (frequencies divided by it; unused
      by ``factors``).
    low_freq_factor: ``llama3`` only: wavelengths above
      ``original_max_position_embeddings / low_freq_factor`` are scaled.
    high_freq_factor: ``llama3`` only: wavelengths below
      ``original_max_position_embeddings / high_freq_factor`` are kept.
    original_max_position_embeddings: ``llama3`` only: the pre-training
      context.
    freq_factors: ``factors`` only: Dh/2 divisors, one per frequency.
  """

  kind: str
  factor: float
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192
  freq_factors: tuple[float, ...] = ()

  def __post_init__(self):
    if self.kind not in ROPE_SCALING_KINDS:
      raise ValueError(
          f"Unsupported rope scaling kind {self.kind!r}: only "
          f"{ROPE_SCALING_KINDS}."
      )
    if self.factor <= 0:
      raise ValueError(f"Rope scaling factor must be > 0, got {self.factor}.")
    if self.kind == "llama3" and self.high_freq_factor <= self.low_freq_factor:
      raise ValueError(
          "llama3 rope scaling needs high_freq_factor > low_freq_factor, got "
          f"{self.high_freq_factor} and {self.low_freq_factor}."
      )
    object.__setattr__(self, "freq_factors", tuple(self.freq_factors))
    if (self.kind == "factors") != bool(self.freq_factors):
      raise ValueError("freq_factors go with kind 'factors', and only there.")


def inv_frequencies(
    head_dim: int, theta: float, scaling: RopeScaling | None = None
) -> np.ndarray:
  """The rotary frequencies ``f_i`` of one head.

  Args:
    head_dim: Dh (even).
    theta: rotary base.
    scaling: a context scaling, or None for the default frequencies.

  Returns:
    [Dh/2] float64 frequencies (radians per position).
  """
  inv = 1.0 / (
      theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  )
  if scaling is None:
    return inv
  if scaling.kind == "linear":
    return inv / scaling.factor
  if scaling.kind == "factors":
    if len(scaling.freq_factors) != len(inv):
      raise ValueError(
          f"{len(scaling.freq_factors)} rope frequency factors for "
          f"{len(inv)} frequencies (head_dim {head_dim})."
      )
    return inv / np.asarray(scaling.freq_factors, np.float64)
  # llama3: keep high frequencies, scale low ones, interpolate in between.
  old = float(scaling.original_max_position_embeddings)
  low, high = scaling.low_freq_factor, scaling.high_freq_factor
  wavelen = 2 * np.pi / inv
  scaled = np.where(wavelen > old / low, inv / scaling.factor, inv)
  smooth = (old / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = (wavelen >= old / high) & (wavelen <= old / low)
  return np.where(medium, smoothed, scaled)


def rope_angles(
    positions: jax.Array,
    head_dim: int,
    theta: float,
    scaling: RopeScaling | None = None,
) -> tuple[jax.Array, jax.Array]:
  """cos and sin of the rotary angles ``pos * f_i``.

  Args:
    positions: [B, L] int32.
    head_dim: Dh (even).
    theta: rotary base.
    scaling: a context scaling of the frequencies, or None.

  Returns:
    (cos, sin), each [B, L, 1, Dh/2] float32 (broadcast over heads).
  """
  inv_freq = inv_frequencies(head_dim, theta, scaling)
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(
      inv_freq, jnp.float32
  )
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  # Computed once: without the barrier XLA fuses cos/sin into every layer's
  # rotation and re-evaluates them per head (20% of a 128-token prefill).
  cos, sin = jax.lax.optimization_barrier((cos, sin))
  return cos[:, :, None, :], sin[:, :, None, :]


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates ``x`` by the rotary angles (the "rotate half" convention).

  With ``x = [x1, x2]`` split in halves, the result is
  ``[x1 cos - x2 sin, x2 cos + x1 sin]`` (as Hugging Face's Llama).

  Args:
    x: [B, L, N, Dh] queries or keys.
    cos: [B, L, 1, Dh/2].
    sin: [B, L, 1, Dh/2].

  Returns:
    [B, L, N, Dh] rotated, in ``x.dtype``.
  """
  half = x.shape[-1] // 2
  x1 = x[..., :half].astype(jnp.float32)
  x2 = x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)
