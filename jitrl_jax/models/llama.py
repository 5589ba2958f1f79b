"""A Llama-family causal language model in Flax NNX, with a KV cache.

The model is the decoder of Touvron et al. (2023), "LLaMA: Open and Efficient
Foundation Language Models": token embedding, a stack of pre-norm blocks

  h = x + Attn(RMSNorm(x)) ;  y = h + MLP(RMSNorm(h)),

a final RMSNorm and a (tied or untied) output projection. Attention uses
rotary position embeddings (Su et al., 2021; base ``rope_theta``, optionally
rescaled, see ``rope.py``) and grouped-query attention (Ainslie et al., 2023):
``H`` query heads share ``KVH`` key/value heads, ``G = H / KVH`` query heads
per group. The MLP is gated: ``down(act(gate(x)) * up(x))`` with SiLU
(SwiGLU, Shazeer, 2020) or GELU.

The same code serves the families whose checkpoints ``loading`` reads, each
a few config switches away from Llama:

* SmolLM, Llama 2 / 3 / 3.1 / 3.2 (``rope_scaling`` llama3 or linear),
  Mistral (sliding-window attention on every layer);
* Qwen2 (q/k/v biases), Qwen3 (``qk_norm``: a per-head RMSNorm of queries
  and keys before the rotation, and a ``head_dim`` of its own);
* Gemma 3 (Gemma Team, 2025): ``qk_norm``, ``sandwich_norms`` (the outputs
  of attention and MLP are RMS-normed again before the residual sum),
  embeddings scaled by ``embed_scale = sqrt(D)``, a GELU-tanh MLP, queries
  scaled by ``query_scale``, and local layers (``sliding_layers``) that
  attend to the last ``sliding_window`` positions with their own rotary base
  ``local_rope_theta``, between global layers. Gemma's RMSNorm scales by
  ``1 + w``; the loader stores ``1 + w``, so one ``rms_norm`` serves all.

Dimension letters: B batch, L input length, S cache slots, D hidden size,
F MLP size, H query heads, KVH key/value heads, G = H / KVH, Dh head size,
V vocabulary, NL layers.

Layouts are chosen for CPU speed: weights are stored ``[in, out]`` so every
projection is ``x @ W``; q/k/v is one fused matmul, gate/up another; the cache
is ``[B, KVH, S, Dh]`` so that a decode step's attention is a batched matmul
over a contiguous cache without a transpose.

Positions and the cache. ``positions [B, L]`` give each token's rotary
position, and, when a cache is used, the cache slot its key/value is written
to (slot = position). A token attends to the cache slots ``s <= position``
that hold a real token (``KVCache.valid``). This makes ragged batches simple:
each row writes its own slots. Tokens whose ``attention_mask`` entry is False
(padding) are not written to the cache.

Functional seam: ``graphdef, state = nnx.split(model)`` crosses ``jax.jit``;
inside, ``nnx.merge(graphdef, state)`` rebuilds the module (see ``apply``).
"""

import dataclasses
import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from jitrl_jax.models import rope as rope_lib

# Re-exported: the rotary helpers used to live here.
RopeScaling = rope_lib.RopeScaling
rope_angles = rope_lib.rope_angles
apply_rope = rope_lib.apply_rope
MLP_ACTIVATIONS = ("silu", "gelu_tanh", "gelu")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Sizes and options of a Llama-family model.

  Attributes:
    vocab_size: V, number of token ids.
    hidden_size: D, residual stream width.
    intermediate_size: F, SwiGLU hidden width.
    num_layers: NL, number of decoder blocks.
    num_heads: H, query heads.
    num_kv_heads: KVH, key/value heads (divides H).
    head_dim: Dh, size of one head.
    rope_theta: base of the rotary frequencies.
    rms_norm_eps: epsilon of RMSNorm.
    max_position_embeddings: the context length the model was trained for.
    tie_word_embeddings: output projection = embedding matrix transposed.
    dtype: parameter and compute dtype (float32 by default: the fast dtype
      on CPU). Norms, softmax and logits are computed in float32.
    attention_bias: q/k/v projections have a bias (Qwen2).
    attention_out_bias: the output projection has a bias (Llama with
      ``attention_bias=True``).
    rope_scaling: rescaling of the rotary frequencies (global layers), or
      None.
    qk_norm: per-head RMSNorm of queries and keys before the rotation
      (Qwen3, Gemma 3).
    sandwich_norms: RMSNorm of the attention and MLP outputs before they are
      added to the residual stream (Gemma).
    embed_scale: token embeddings are multiplied by it (Gemma: sqrt(D),
      rounded to ``dtype``).
    mlp_activation: ``"silu"``, ``"gelu_tanh"`` or ``"gelu"`` (exact).
    query_scale: attention scores are ``q.k * query_scale``; None =
      ``1 / sqrt(head_dim)``.
    sliding_window: W: a layer of ``sliding_layers`` lets the token at
      position ``p`` attend only to positions ``p - W < s <= p``.
    sliding_layers: one bool per layer, True = local (sliding-window)
      layer; empty = all layers global.
    local_rope_theta: rotary base of the local layers (unscaled); None =
      ``rope_theta`` with ``rope_scaling``.
    final_logit_softcap: logits become ``cap * tanh(logits / cap)``; None =
      no cap.
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-5
  max_position_embeddings: int = 2048
  tie_word_embeddings: bool = True
  dtype: Any = jnp.float32
  attention_bias: bool = False
  attention_out_bias: bool = False
  rope_scaling: rope_lib.RopeScaling | None = None
  qk_norm: bool = False
  sandwich_norms: bool = False
  embed_scale: float = 1.0
  mlp_activation: str = "silu"
  query_scale: float | None = None
  sliding_window: int | None = None
  sliding_layers: tuple[bool, ...] = ()
  local_rope_theta: float | None = None
  final_logit_softcap: float | None = None

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} is not a multiple of "
          f"num_kv_heads={self.num_kv_heads}."
      )
    if self.mlp_activation not in MLP_ACTIVATIONS:
      raise ValueError(
          f"Unsupported MLP activation {self.mlp_activation!r}: only "
          f"{MLP_ACTIVATIONS}."
      )
    object.__setattr__(self, "sliding_layers", tuple(self.sliding_layers))
    if self.sliding_layers and len(self.sliding_layers) != self.num_layers:
      raise ValueError(
          f"sliding_layers has {len(self.sliding_layers)} entries for "
          f"{self.num_layers} layers."
      )
    if any(self.sliding_layers) and not self.sliding_window:
      raise ValueError("Local layers need a sliding_window > 0.")

  def is_local(self, layer: int) -> bool:
    """Whether layer ``layer`` attends through the sliding window."""
    return bool(self.sliding_layers) and bool(self.sliding_layers[layer])

  @property
  def group_size(self) -> int:
    """G: query heads per key/value head."""
    return self.num_heads // self.num_kv_heads


class KVCache(NamedTuple):
  """Keys and values of past tokens, one entry per layer.

  Slot ``s`` of row ``b`` holds the token at position ``s``.
  """

  keys: tuple[jax.Array, ...]  # NL x [B, KVH, S, Dh] dtype
  values: tuple[jax.Array, ...]  # NL x [B, KVH, S, Dh] dtype
  valid: jax.Array  # [B, S] bool, slot holds a real token


def init_cache(config: LlamaConfig, batch: int, max_len: int) -> KVCache:
  """An empty cache for ``batch`` rows of up to ``max_len`` positions.

  Args:
    config: the model's config.
    batch: B.
    max_len: S, number of slots (positions ``0 .. S-1``).

  Returns:
    A ``KVCache`` of zeros with ``valid`` all False.
  """
  shape = (batch, config.num_kv_heads, max_len, config.head_dim)
  zeros = tuple(
      jnp.zeros(shape, config.dtype) for _ in range(config.num_layers)
  )
  return KVCache(
      keys=zeros,
      values=tuple(jnp.zeros_like(z) for z in zeros),
      valid=jnp.zeros((batch, max_len), bool),
  )


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
  """RMSNorm: ``w * x / sqrt(mean(x^2) + eps)`` over the last axis, in f32.

  Args:
    x: [..., D] activations.
    weight: [D] scale.
    eps: epsilon.

  Returns:
    [..., D] normalised activations in ``x.dtype``.
  """
  x32 = x.astype(jnp.float32)
  var = jnp.mean(x32 * x32, axis=-1, keepdims=True)
  y = x32 * jax.lax.rsqrt(var + eps)
  return (weight.astype(jnp.float32) * y).astype(x.dtype)


def attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array
) -> jax.Array:
  """Grouped-query attention ``softmax(q k^T + mask) v`` per key/value head.

  The G query heads of a group and the L queries are merged into one row
  axis, so each of the B x KVH products is a single plain matmul (about
  1.8x faster on CPU than a dot with separate G and L axes); the softmax
  normaliser is applied after the product with ``v``, on [.., L, Dh] rather
  than [.., L, S]. Fully masked rows give a uniform average (no NaN).

  Args:
    q: [B, L, KVH, G, Dh] queries, already scaled by 1 / sqrt(Dh).
    k: [B, KVH, S, Dh] keys.
    v: [B, KVH, S, Dh] values.
    mask: [B, L, S] bool, True = attend.

  Returns:
    [B, L, KVH * G * Dh] in ``v.dtype``, heads ordered ``h = kvh * G + g``.
  """
  b, l, kvh, g, dh = q.shape
  s = k.shape[2]
  rows = q.transpose(0, 2, 3, 1, 4).reshape(b, kvh, g * l, dh)
  scores = jnp.einsum("bkqd,bksd->bkqs", rows, k).astype(jnp.float32)
  scores = scores.reshape(b, kvh, g, l, s)
  scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
  weights = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
  norm = jnp.sum(weights, axis=-1, keepdims=True)  # [B, KVH, G, L, 1]
  out = jnp.einsum(
      "bkqs,bksd->bkqd", weights.reshape(b, kvh, g * l, s).astype(v.dtype), v
  ).reshape(b, kvh, g, l, dh)
  out = (out.astype(jnp.float32) / norm).astype(v.dtype)
  return out.transpose(0, 3, 1, 2, 4).reshape(b, l, kvh * g * dh)


# Queries are processed in chunks of at least this many rows (and at most
# MAX_ATTENTION_CHUNKS chunks): small score buffers stay in cache, and causal
# chunks skip the keys after them.
ATTENTION_CHUNK = 128
MAX_ATTENTION_CHUNKS = 16


def chunked_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    *,
    causal: bool,
    prefix_len: int = 0,
) -> jax.Array:
  """``attention`` over chunks of queries.

  With ``causal=True`` the mask must be lower-triangular by index (key
  ``s > l`` never attended by query ``l``; true without a cache, where keys
  are the block's own tokens), so the chunk of queries ``[a, b)`` only sees
  keys ``[0, b)``: about half the work of the full square. With
  ``prefix_len = P`` the keys are P earlier tokens (a reused prefix) and
  then the block's own, causal among themselves: the chunk sees keys
  ``[0, P + b)``. Otherwise each chunk sees all S keys. Same result as ``attention`` either way; on CPU,
  chunks of ~128 queries are several times faster than one [L, S] score
  matrix once L is in the hundreds (the buffers stay small).

  Args:
    q: [B, L, KVH, G, Dh] scaled queries.
    k: [B, KVH, S, Dh] keys.
    v: [B, KVH, S, Dh] values.
    mask: [B, L, S] bool.
    causal: keys are the queries' own block (S = L, or P + L after a
      prefix) and the mask is lower-triangular on the block's part.
    prefix_len: static P, keys before the block's own (0 for none).

  Returns:
    [B, L, KVH * G * Dh].
  """
  l = q.shape[1]
  if l <= ATTENTION_CHUNK:
    return attention(q, k, v, mask)
  size = max(ATTENTION_CHUNK, -(-l // MAX_ATTENTION_CHUNKS))
  outs = []
  for start in range(0, l, size):
    end = min(start + size, l)
    keys = prefix_len + end if causal else k.shape[2]
    outs.append(
        attention(
            q[:, start:end],
            k[:, :, :keys],
            v[:, :, :keys],
            mask[:, start:end, :keys],
        )
    )
  return jnp.concatenate(outs, axis=1)


def _normal(rngs: nnx.Rngs, shape, dtype, std=0.02):
  return (std * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(
      dtype
  )


def _activation(name: str, x: jax.Array) -> jax.Array:
  if name == "silu":
    return jax.nn.silu(x)
  return jax.nn.gelu(x, approximate=name == "gelu_tanh")


def _ones_or_none(shape, dtype, present: bool):
  return nnx.Param(jnp.ones(shape, dtype)) if present else None


class LlamaBlock(nnx.Module):
  """One pre-norm decoder block: attention then gated MLP."""

  def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
    c = config
    d, dt = c.hidden_size, c.dtype
    qkv = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
    self.attn_norm = nnx.Param(jnp.ones((d,), dt))
    self.wqkv = nnx.Param(_normal(rngs, (d, qkv), dt))  # [D, (H+2KVH)*Dh]
    self.bqkv = nnx.Param(jnp.zeros((qkv,), dt)) if c.attention_bias else None
    self.q_norm = _ones_or_none((c.head_dim,), dt, c.qk_norm)
    self.k_norm = _ones_or_none((c.head_dim,), dt, c.qk_norm)
    self.wo = nnx.Param(_normal(rngs, (c.num_heads * c.head_dim, d), dt))
    self.bo = nnx.Param(jnp.zeros((d,), dt)) if c.attention_out_bias else None
    self.attn_post_norm = _ones_or_none((d,), dt, c.sandwich_norms)
    self.mlp_norm = nnx.Param(jnp.ones((d,), dt))
    # [D, 2F]: gate in the first F columns, up in the last F.
    self.w_gate_up = nnx.Param(_normal(rngs, (d, 2 * c.intermediate_size), dt))
    self.w_down = nnx.Param(_normal(rngs, (c.intermediate_size, d), dt))
    self.mlp_post_norm = _ones_or_none((d,), dt, c.sandwich_norms)

  def __call__(
      self,
      x: jax.Array,
      rope: tuple[jax.Array, jax.Array],
      mask: jax.Array,
      config: LlamaConfig,
      layer_cache: tuple[jax.Array, jax.Array] | None,
      write_slots: jax.Array | None,
      layer_prefix: tuple[jax.Array, jax.Array] | None = None,
  ):
    """Applies the block.

    Args:
      x: [B, L, D] residual stream.
      rope: (cos, sin) [B, L, 1, Dh/2].
      mask: [B, L, L] (no cache), [B, L, P + L] (prefix) or [B, L, S]
        (cache) bool, True = attend.
      config: the model config.
      layer_cache: (keys, values) [B, KVH, S, Dh] or None.
      write_slots: [B, L] int32 cache slot of each token (S = dropped).
      layer_prefix: (keys, values) [1 or B, KVH, P, Dh] of earlier tokens
        the block's tokens also attend to (no cache), or None.

    Returns:
      (y [B, L, D], new (keys, values) or None).
    """
    c = config
    b, l, _ = x.shape
    h, kvh, g, dh = c.num_heads, c.num_kv_heads, c.group_size, c.head_dim
    y = rms_norm(x, self.attn_norm[...], c.rms_norm_eps)
    qkv = jnp.einsum("bld,de->ble", y, self.wqkv[...])
    if self.bqkv is not None:
      qkv = qkv + self.bqkv[...]
    qkv = qkv.reshape(b, l, h + 2 * kvh, dh)
    q, k = qkv[:, :, :h], qkv[:, :, h : h + kvh]
    if self.q_norm is not None:
      q = rms_norm(q, self.q_norm[...], c.rms_norm_eps)
      k = rms_norm(k, self.k_norm[...], c.rms_norm_eps)
    q = apply_rope(q, *rope).reshape(b, l, kvh, g, dh)
    k = apply_rope(k, *rope)  # [B, L, KVH, Dh]
    v = qkv[:, :, h + kvh :]  # [B, L, KVH, Dh]
    scale = 1.0 / math.sqrt(dh) if c.query_scale is None else c.query_scale
    q = q * jnp.asarray(scale, q.dtype)
    if layer_cache is None:
      k = k.transpose(0, 2, 1, 3)  # [B, KVH, L, Dh]
      v = v.transpose(0, 2, 1, 3)
      new_cache = None
      if layer_prefix is not None:
        pk, pv = layer_prefix
        shape = (b,) + pk.shape[1:]
        k = jnp.concatenate([jnp.broadcast_to(pk, shape).astype(k.dtype), k], 2)
        v = jnp.concatenate([jnp.broadcast_to(pv, shape).astype(v.dtype), v], 2)
    else:
      cache_k, cache_v = layer_cache
      rows = jnp.arange(b)[:, None, None]
      heads = jnp.arange(kvh)[None, :, None]
      slots = write_slots[:, None, :]
      k = cache_k.at[rows, heads, slots].set(
          k.transpose(0, 2, 1, 3), mode="drop"
      )
      v = cache_v.at[rows, heads, slots].set(
          v.transpose(0, 2, 1, 3), mode="drop"
      )
      new_cache = (k, v)
    # [B, L, H * Dh]
    attn = chunked_attention(
        q,
        k,
        v,
        mask,
        causal=layer_cache is None,
        prefix_len=0 if layer_prefix is None else layer_prefix[0].shape[2],
    )
    out = jnp.einsum("ble,ed->bld", attn, self.wo[...])
    if self.bo is not None:
      out = out + self.bo[...]
    if self.attn_post_norm is not None:
      out = rms_norm(out, self.attn_post_norm[...], c.rms_norm_eps)
    x = x + out
    y = rms_norm(x, self.mlp_norm[...], c.rms_norm_eps)
    gate_up = jnp.einsum("bld,df->blf", y, self.w_gate_up[...])
    f = c.intermediate_size
    act = _activation(c.mlp_activation, gate_up[..., :f]) * gate_up[..., f:]
    out = jnp.einsum("blf,fd->bld", act, self.w_down[...])
    if self.mlp_post_norm is not None:
      out = rms_norm(out, self.mlp_post_norm[...], c.rms_norm_eps)
    return x + out, new_cache


def _attention_masks(
    config: LlamaConfig,
    positions: jax.Array,
    cache: KVCache | None,
    attention_mask: jax.Array | None,
    prefix: KVCache | None = None,
):
  """The global and local attention masks of ``Llama.__call__``.

  Args:
    config: the model config.
    positions: [B, L] int32.
    cache: the input cache, or None.
    attention_mask: as ``Llama.__call__``.
    prefix: as ``Llama.__call__`` (no cache): its valid slots come first.

  Returns:
    (mask, local_mask, write_slots, valid): masks [B, L, L] (no cache) or
    [B, L, S] bool; ``local_mask`` further keeps only keys less than
    ``sliding_window`` positions back (it is ``mask`` when no layer is
    local); with a cache, ``write_slots`` [B, L] (S = not written) and the
    new ``valid`` [B, S], else None and None.
  """
  b, l = positions.shape
  if cache is None:
    causal = jnp.tril(jnp.ones((l, l), bool))[None]
    if attention_mask is None:
      mask = jnp.broadcast_to(causal, (b, l, l))
    elif attention_mask.ndim == 2:
      mask = causal & attention_mask[:, None, :].astype(bool)
    else:  # a token never attends to a later one
      mask = causal & attention_mask.astype(bool)
    write_slots = valid = None
    key_positions = positions[:, None, :]  # [B, 1, L]
    if prefix is not None:
      p = prefix.valid.shape[1]
      seen = jnp.broadcast_to(prefix.valid[:, None, :], (b, l, p))
      mask = jnp.concatenate([seen, mask], axis=2)
      key_positions = jnp.concatenate(
          [
              jnp.broadcast_to(jnp.arange(p)[None, None, :], (b, 1, p)),
              key_positions,
          ],
          axis=2,
      )
  else:
    s = cache.valid.shape[1]
    real = (
        jnp.ones((b, l), bool)
        if attention_mask is None
        else attention_mask.astype(bool)
    )
    if real.ndim != 2:
      raise ValueError("With a cache, attention_mask must be [B, L].")
    write_slots = jnp.where(real, positions, s)  # S -> dropped
    valid = cache.valid.at[jnp.arange(b)[:, None], write_slots].set(
        True, mode="drop"
    )
    key_positions = jnp.arange(s)[None, None, :]  # slot = position
    mask = valid[:, None, :] & (key_positions <= positions[:, :, None])
  local_mask = mask
  if any(config.sliding_layers):
    local_mask = mask & (
        positions[:, :, None] - key_positions < config.sliding_window
    )
  return mask, local_mask, write_slots, valid


class Llama(nnx.Module):
  """Llama-family causal LM.

  Call: ``model(tokens [B, L], positions [B, L], cache=None,
  attention_mask=None) -> (logits [B, L, V] float32, new cache)``.
  """

  def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
    c = config
    self.config = c
    self.embed = nnx.Param(
        _normal(rngs, (c.vocab_size, c.hidden_size), c.dtype)
    )  # [V, D]
    self.blocks = nnx.List(
        [LlamaBlock(c, rngs=rngs) for _ in range(c.num_layers)]
    )
    self.final_norm = nnx.Param(jnp.ones((c.hidden_size,), c.dtype))
    self.lm_head = (
        None
        if c.tie_word_embeddings
        else nnx.Param(_normal(rngs, (c.hidden_size, c.vocab_size), c.dtype))
    )  # [D, V]

  def unembed(self, hidden: jax.Array) -> jax.Array:
    """Output projection of final-normed hidden states.

    Args:
      hidden: [..., D] (as returned with ``return_hidden=True``).

    Returns:
      [..., V] float32 logits.
    """
    if self.lm_head is None:
      logits = jnp.einsum("...d,vd->...v", hidden, self.embed[...])
    else:
      logits = jnp.einsum("...d,dv->...v", hidden, self.lm_head[...])
    return self.cap_logits(logits)

  def output_weights(self) -> jax.Array:
    """[V, D] the output projection's rows (the embedding when tied)."""
    if self.lm_head is None:
      return self.embed[...]
    return self.lm_head[...].T

  def cap_logits(self, logits: jax.Array) -> jax.Array:
    """Raw output-projection logits -> float32 logits (the soft cap)."""
    logits = logits.astype(jnp.float32)
    cap = self.config.final_logit_softcap
    if cap is not None:
      logits = cap * jnp.tanh(logits / cap)
    return logits

  def __call__(
      self,
      tokens: jax.Array,
      positions: jax.Array,
      cache: KVCache | None = None,
      attention_mask: jax.Array | None = None,
      *,
      return_hidden: bool = False,
      prefix: KVCache | None = None,
  ) -> tuple[jax.Array, KVCache | None]:
    """Runs the model on a block of tokens.

    Without a cache, token ``i`` attends to tokens ``j <= i`` (by index in the
    block) whose ``attention_mask [B, L]`` entry is True; a full
    ``attention_mask [B, L, L]`` (query, key) restricts that causal rule
    further, e.g. for block-diagonal candidate scoring (it is intersected
    with it: a token never attends to a later one). With a cache, the
    block's keys/values are first written to slots ``positions`` (padding
    tokens are not written) and token ``i`` attends to the valid slots
    ``s <= positions[i]``. In local layers (``config.sliding_layers``) a
    token also ignores keys ``sliding_window`` or more positions back.

    Args:
      tokens: [B, L] int32 token ids.
      positions: [B, L] int32 rotary positions (= cache slots).
      cache: a ``KVCache`` with S slots, or None.
      attention_mask: None (all real), [B, L] bool real-token mask, or, only
        without a cache, [B, L, L] bool attention mask (within the causal
        rule).
      return_hidden: return the final-normed hidden states [B, L, D] instead
        of logits (project later with ``unembed``).
      prefix: only without a cache: a ``KVCache`` [1 or B, KVH, P, Dh] of P
        earlier tokens at positions ``0 .. P-1`` (slot = position, e.g. a
        prompt head encoded once by ``prefill``); every token of the block
        also attends to its valid slots (in local layers, those less than
        ``sliding_window`` positions back). The block's positions should
        start at P. Exact: the same result as running the prefix and the
        block as one sequence.

    Returns:
      (logits [B, L, V] float32, or hidden [B, L, D]; the new cache or None).
    """
    c = self.config
    if prefix is not None and cache is not None:
      raise ValueError("prefix and cache cannot be combined")
    chex.assert_rank(tokens, 2)
    chex.assert_equal_shape([tokens, positions])
    # Clip so that padding ids (e.g. -1) cannot put NaN into masked slots.
    x = jnp.take(self.embed[...], tokens, axis=0, mode="clip")  # [B, L, D]
    if c.embed_scale != 1.0:
      x = x * jnp.asarray(c.embed_scale, x.dtype)
    rope = rope_angles(positions, c.head_dim, c.rope_theta, c.rope_scaling)
    local_rope = rope
    if any(c.sliding_layers) and c.local_rope_theta is not None:
      local_rope = rope_angles(positions, c.head_dim, c.local_rope_theta)
    mask, local_mask, write_slots, valid = _attention_masks(
        c, positions, cache, attention_mask, prefix
    )
    new_keys, new_values = [], []
    for i, block in enumerate(self.blocks):
      layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
      local = c.is_local(i)
      x, layer_cache = block(
          x,
          local_rope if local else rope,
          local_mask if local else mask,
          c,
          layer_cache,
          write_slots,
          None if prefix is None else (prefix.keys[i], prefix.values[i]),
      )
      if layer_cache is not None:
        new_keys.append(layer_cache[0])
        new_values.append(layer_cache[1])
    new_cache = (
        None
        if cache is None
        else KVCache(tuple(new_keys), tuple(new_values), valid)
    )
    hidden = rms_norm(x, self.final_norm[...], c.rms_norm_eps)
    if return_hidden:
      return hidden, new_cache
    return self.unembed(hidden), new_cache


def apply(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    tokens: jax.Array,
    positions: jax.Array,
    cache: KVCache | None = None,
    attention_mask: jax.Array | None = None,
    *,
    return_hidden: bool = False,
):
  """Functional form of ``Llama.__call__`` on ``nnx.split(model)``.

  Args:
    graphdef: the model's graph definition (static under jit).
    state: the model's parameters.
    tokens, positions, cache, attention_mask, return_hidden: as
      ``Llama.__call__``.

  Returns:
    As ``Llama.__call__``.
  """
  model = nnx.merge(graphdef, state)
  return model(
      tokens,
      positions,
      cache,
      attention_mask,
      return_hidden=return_hidden,
  )
