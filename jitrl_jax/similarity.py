"""Jaccard similarity of padded token sets, exact and via hashed bitsets.

JitRL (arXiv 2601.18510, docs/method.md section 3) retrieves past
experiences whose state is close to the current one, closeness being the
Jaccard similarity of token sets (see `token_sets`):

  set:       J(A, B) = |A n B| / |A u B|
  multiset:  J(A, B) = sum_x min(cA(x), cB(x)) / sum_x max(cA(x), cB(x))

The multiset form reduces to the set form when every count is 1, so one
kernel computes both. Empty against anything is 0 (all padding, and a
zero-width set, S = 0, too); identical non-empty sets give 1; ids equal to
PAD (any negative id) contribute nothing. Several views are combined by a
weighted sum, e.g. 0.3 * J(history) + 0.7 * J(current).

Valid ids must be unique within a set (`token_sets` guarantees it; a
multiset says "x twice" with one id x of count 2, never with x in two
slots). With a repeated valid id the four exact kernels disagree, so the
public functions refuse one with ValueError whenever the ids are concrete
(eager calls, and a query closed over by a traced function); traced ids
cannot be checked.

Exact kernel. `jaccard(a, b)` builds a small hash table over a's ids (size
T = 2**(ceil(log2 S_a) + 6), a load factor under 1/64; 16 KiB for S = 64, so
it stays in cache even for 32 queries at once) and looks every id of b up in
it: one multiply-shift hash and two gathers per id, O(S_a + S_b). Ids of a
that lose a slot collision (S^2 / 2T ~ 0.5 expected for S = 64) are compared
directly, up to 4 of them; any beyond that are placed by further passes
with other multipliers (a `lax.while_loop` that almost never runs, and
each pass places at least one id), so the result is exact. With a = query
and vmap over the rows of a memory, the table is built once per query.
Measured on CPU at M = 1e5, S = 64 (one query, 2 busy shared cores):
[S, S] equality ("dense") ~2.5 s, searchsorted-style branchless binary
search ("search") ~0.25 s, hash table ("hash", the default) ~0.05 s. The
three agree exactly; all are kept, selected by `method`, for tests and
benchmarks.

Bitset kernel. `to_bitset` hashes a set into n_bits bits (n_bits / 32 uint32
words) and `bitset_jaccard` returns popcount(a & b) / popcount(a | b), a
bandwidth-bound scan (see its docstring for the error). The bitsets of M
sets are a `BitsetMatrix` (`bitset_matrix`): words stored word-major, [W, M]
with W = n_bits / 32, so row w holds word w of every entry and a scan reads W
contiguous streams that XLA vectorises across entries (row-major [M, W] makes
every word a strided load: measured 2-2.5x slower at M = 1e5, W = 64), plus
each entry's popcount, so the scan needs one popcount a word, of q & b, and
the union follows as |q| + |b| - |q & b|.

Dimension letters: S set size, M memory rows, W bitset words, V views.
"""

from typing import NamedTuple, Sequence

import chex
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import token_sets

TokenSet = token_sets.TokenSet

# Knuth's multiplicative-hash constant (odd); pass p adds p * _MULT_STEP
# (even), so every multiplier stays odd.
_MULT = 0x9E3779B1
_MULT_STEP = 0xD1B54A32
_EMPTY = np.iinfo(np.int32).max  # table slot marker; never a valid id.
_TABLE_LOG2_EXTRA = 6  # T = 2**(ceil(log2 S) + 6): load factor <= 1/64.
_LEFTOVERS = 4  # colliding ids compared directly before any further pass.


def _multiply_shift(x: jax.Array, mult, log2_size: int) -> jax.Array:
  """Top `log2_size` bits of uint32(x) * mult: an index in [0, 2**log2)."""
  h = x.astype(jnp.uint32) * jnp.asarray(mult, jnp.uint32)
  return (h >> jnp.uint32(32 - log2_size)).astype(jnp.int32)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den, and 0 where den <= 0."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)


def _check_unique(ids, name: str) -> None:
  """Raises ValueError if concrete ids [..., S] repeat a valid id in a row.

  Traced ids (under jit, vmap, lax.map) cannot be read and are not checked.
  """
  if isinstance(ids, jax.core.Tracer):
    return
  ids = np.asarray(ids)
  if ids.ndim == 0 or ids.shape[-1] < 2:
    return
  ids = np.sort(ids, axis=-1)
  dup = (ids[..., 1:] == ids[..., :-1]) & (ids[..., 1:] >= 0)
  if dup.any():
    raise ValueError(
        f"{name} has duplicate ids {np.unique(ids[..., 1:][dup]).tolist()}:"
        " valid ids must be unique within a set (give a repeated id one"
        " slot with its total count, as token_sets.token_set does)."
    )


def _as_set(ts: TokenSet, name: str) -> TokenSet:
  """Checks one unstacked set ([S] ids and counts) and makes it jax arrays.

  The arrays are converted here, at the entry: a NumPy query indexed by a
  traced value inside `lax.map` (see `_map_blocks`) would fail.
  """
  ids, counts = jnp.asarray(ts.ids), jnp.asarray(ts.counts)
  message = (
      f"{name} must have ids [S] and counts [S], got ids {ids.shape} and"
      f" counts {counts.shape}; use jax.vmap for stacked sets"
  )
  chex.assert_rank(ids, 1, custom_message=message, exception_type=ValueError)
  chex.assert_equal_shape(
      [ids, counts], custom_message=message, exception_type=ValueError
  )
  _check_unique(ts.ids, name)
  return TokenSet(ids, counts)


def _matched_counts_hash(a: TokenSet, b_ids: jax.Array) -> jax.Array:
  """For each id of b, its count in a (0 if absent), via a hash table of a.

  Args:
    a: TokenSet, ids [S_a] (unique valid ids; PAD < 0 ignored).
    b_ids: [S_b] int32.

  Returns:
    [S_b] float32 count of b_ids[i] in a.
  """
  s_a = a.ids.shape[0]
  if s_a == 0:  # Nothing to find (and no slot to read leftovers from).
    return jnp.zeros(jnp.shape(b_ids), jnp.float32)
  log2_t = max(int(np.ceil(np.log2(s_a))), 0) + _TABLE_LOG2_EXTRA
  size = 1 << log2_t
  a_ids = a.ids.astype(jnp.int32)
  a_counts = a.counts.astype(jnp.float32)
  b_ids = b_ids.astype(jnp.int32)

  def one_pass(p, unplaced, found):
    mult = jnp.uint32(_MULT) + p.astype(jnp.uint32) * jnp.uint32(_MULT_STEP)
    h = _multiply_shift(a_ids, mult, log2_t)
    h_in = jnp.where(unplaced, h, size)  # size: out of range, dropped.
    # Colliding ids: the smallest takes the slot, the others wait a pass.
    table = (
        jnp.full((size,), _EMPTY, jnp.int32).at[h_in].min(a_ids, mode="drop")
    )
    placed = unplaced & (table[jnp.minimum(h, size - 1)] == a_ids)
    table_counts = (
        jnp.zeros((size,), jnp.float32)
        .at[jnp.where(placed, h, size)]
        .set(a_counts, mode="drop")
    )
    hb = _multiply_shift(b_ids, mult, log2_t)
    # A b id equal to an a id placed in this pass finds it; every a id is
    # placed in exactly one pass, so nothing is counted twice.
    found = found + jnp.where(table[hb] == b_ids, table_counts[hb], 0.0)
    return unplaced & ~placed, found

  unplaced = a_ids >= 0
  found = jnp.zeros(b_ids.shape, jnp.float32)
  unplaced, found = one_pass(jnp.int32(0), unplaced, found)
  # The few ids that lost a collision (expected S^2 / 2T ~ 0.1 for S = 64)
  # are compared directly: up to _LEFTOVERS elementwise compares, no pass.
  # Filler entries of `rest` are s_a, out of range: reads clip them (and
  # mask the result), the scatter below drops them, so it only ever
  # writes distinct in-range indices (a filler clipped onto index s_a - 1
  # would race with a real leftover there: duplicate-index scatters of
  # different values are implementation-defined).
  (rest,) = jnp.nonzero(unplaced, size=_LEFTOVERS, fill_value=s_a)
  rest_ok = rest < s_a
  rest_read = jnp.minimum(rest, s_a - 1)
  for j in range(_LEFTOVERS):
    hit = rest_ok[j] & (b_ids == a_ids[rest_read[j]])
    found = found + jnp.where(hit, a_counts[rest_read[j]], 0.0)
  unplaced = unplaced.at[rest].set(False, mode="drop")

  def cond(carry):
    return jnp.any(carry[1])

  def body(carry):
    p, unplaced, found = carry
    unplaced, found = one_pass(p, unplaced, found)
    return p + 1, unplaced, found

  _, _, found = lax.while_loop(cond, body, (jnp.int32(1), unplaced, found))
  return found


def _matched_counts_search(a: TokenSet, b_ids: jax.Array) -> jax.Array:
  """Like `_matched_counts_hash`, by branchless binary search in sorted a."""
  s_a = a.ids.shape[0]
  n = 1 << max(int(np.ceil(np.log2(max(s_a, 1)))), 0)
  key = jnp.where(a.ids < 0, _EMPTY, a.ids.astype(jnp.int32))
  key = jnp.concatenate([key, jnp.full((n - s_a,), _EMPTY, jnp.int32)])
  counts = jnp.concatenate(
      [a.counts.astype(jnp.float32), jnp.zeros((n - s_a,), jnp.float32)]
  )
  b_ids = b_ids.astype(jnp.int32)
  pos = jnp.zeros(b_ids.shape, jnp.int32)
  step = n // 2
  while step >= 1:  # lower_bound, clipped to n - 1.
    pos = jnp.where(key[pos + step - 1] < b_ids, pos + step, pos)
    step //= 2
  return jnp.where(key[pos] == b_ids, counts[pos], 0.0)


def _matched_counts_dense(a: TokenSet, b_ids: jax.Array) -> jax.Array:
  """Like `_matched_counts_hash`, by an [S_b, S_a] equality matrix."""
  eq = (b_ids[:, None] == a.ids[None, :]) & (a.ids[None, :] >= 0)
  return jnp.sum(jnp.where(eq, a.counts[None, :], 0.0), axis=-1)


_METHODS = {
    "hash": _matched_counts_hash,
    "search": _matched_counts_search,
    "dense": _matched_counts_dense,
}
# "unrolled" computes the intersection itself (see `jaccard`), so it is not
# one of the found-counts kernels above.
_ALL_METHODS = (*sorted(_METHODS), "unrolled")
_UNROLLED_MAX_PAIRS = 1024  # S_a * S_b above which "unrolled" is refused.


def _intersection_unrolled(a: TokenSet, b: TokenSet):
  """(sum_x min(ca, cb), sum_x cb) by S_a * S_b unrolled scalar operations.

  Every operation reads single elements of the *inputs* (a's counts already
  zeroed on PAD), so under `jax.vmap` over memory rows XLA fuses the whole
  kernel into one loop over the rows, vectorised across them: for small sets
  (S = 8: 64 compares a row) ~10-20x faster than "dense", whose [S_b, S_a]
  intermediate and small-axis reductions XLA:CPU does not vectorise.

  Args:
    a: TokenSet [S_a] (ids unique; counts zero on PAD).
    b: TokenSet [S_b] (ids unique; counts zero on PAD).

  Returns:
    (intersection, |b|), two [] float32.
  """
  inter = jnp.float32(0.0)
  size_b = jnp.float32(0.0)
  for j in range(b.ids.shape[0]):
    found = jnp.float32(0.0)
    for i in range(a.ids.shape[0]):
      found = found + jnp.where(b.ids[j] == a.ids[i], a.counts[i], 0.0)
    inter = inter + jnp.minimum(found, b.counts[j])
    size_b = size_b + b.counts[j]
  return inter, size_b


def jaccard(a: TokenSet, b: TokenSet, *, method: str = "hash") -> jax.Array:
  """Exact (multiset) Jaccard similarity of two padded token sets.

  J(a, b) = sum_x min(ca(x), cb(x)) / sum_x max(ca(x), cb(x)), computed as
  m / (|a| + |b| - m) with m = sum_x min(ca(x), cb(x)) and |.| the total
  count. With counts of 1 this is the set Jaccard |a n b| / |a u b|. Empty
  (all-padding or zero-width, S = 0) against anything gives 0. Valid ids
  must be unique within a set (as `token_sets` produces); they need not be
  sorted, except for "search". Entries with a negative id (PAD) contribute
  nothing, whatever their count, and PAD may repeat.

  Args:
    a: TokenSet with ids [S_a] int32, counts [S_a] float32 (counts >= 0).
    b: TokenSet with ids [S_b] int32, counts [S_b] float32; S_b may differ.
    method: "hash" (default, fastest for large sets), "search" (binary
      search; needs a sorted), "dense" ([S_b, S_a] equality) or "unrolled"
      (S_a * S_b scalar compares, fused across memory rows under vmap: the
      fastest for small sets, S_a * S_b <= 1024). All give the same value.

  Returns:
    [] float32 in [0, 1].

  Raises:
    ValueError: on an unknown method, a set that is not [S], or, when the
      ids are concrete (not traced), a valid id repeated within a set.
  """
  if method not in _ALL_METHODS:
    raise ValueError(f"method must be one of {_ALL_METHODS}: {method!r}")
  a = _as_set(a, "a")
  b = _as_set(b, "b")
  a_counts = jnp.where(a.ids >= 0, a.counts.astype(jnp.float32), 0.0)
  b_counts = jnp.where(b.ids >= 0, b.counts.astype(jnp.float32), 0.0)
  a = TokenSet(a.ids, a_counts)
  if method == "unrolled":
    pairs = a.ids.shape[0] * b.ids.shape[0]
    if pairs > _UNROLLED_MAX_PAIRS:
      raise ValueError(
          f'method="unrolled" is for small sets (S_a * S_b <='
          f" {_UNROLLED_MAX_PAIRS}), got {a.ids.shape[0]} x"
          f' {b.ids.shape[0]}; use "hash"'
      )
    inter, size_b = _intersection_unrolled(a, TokenSet(b.ids, b_counts))
  else:
    found = _METHODS[method](a, b.ids)
    inter = jnp.sum(jnp.minimum(found, b_counts))
    size_b = jnp.sum(b_counts)
  union = jnp.sum(a_counts) + size_b - inter
  return _safe_ratio(inter, union).astype(jnp.float32)


def _check_weights(weights, num_views: int) -> jax.Array:
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape != (num_views,):
    raise ValueError(
        f"weights must have shape [{num_views}] (one per view), got "
        f"{weights.shape}"
    )
  return weights


def weighted_jaccard(
    query_views: Sequence[TokenSet],
    entry_views: Sequence[TokenSet],
    weights,
    *,
    method: str = "hash",
    floors=None,
) -> jax.Array:
  """Weighted sum of per-view Jaccard similarities, with optional floors.

  sim(q, e) = sum_v w_v * J(q_v, e_v), e.g. 0.3 * J(history) + 0.7 *
  J(current) for text games (docs/method.md section 3). With floors f,
  sim(q, e) = 0 unless J(q_v, e_v) >= f_v for every view: a hard filter
  (the authors' web key keeps only entries of the same normalised URL,
  f = 1 on a URL view, and a task Jaccard of at least 0.27; a view of
  weight 0 can filter without scoring; docs/method.md section 9).

  Args:
    query_views: V TokenSets, view v with ids [S_v].
    entry_views: V TokenSets, view v with ids [S_v'].
    weights: [V] float weights (not normalised here).
    method: see `jaccard`.
    floors: None, or [V] float minimum Jaccard per view (0: no filter).

  Returns:
    [] float32; in [0, sum(weights)] for non-negative weights.

  Raises:
    ValueError: as `jaccard` (duplicate ids name the view), or on a view
      count or weight shape mismatch.
  """
  if len(query_views) != len(entry_views):
    raise ValueError(
        f"{len(query_views)} query views but {len(entry_views)} entry views"
    )
  weights = _check_weights(weights, len(query_views))
  for v, (q, e) in enumerate(zip(query_views, entry_views)):
    _check_unique(q.ids, f"query view {v}")
    _check_unique(e.ids, f"entry view {v}")
  sims = jnp.stack(
      [jaccard(q, e, method=method) for q, e in zip(query_views, entry_views)]
  )
  total = jnp.sum(weights * sims)
  if floors is None:
    return total
  floors = _check_weights(floors, len(query_views))
  return jnp.where(jnp.all(sims >= floors), total, 0.0).astype(jnp.float32)


def _map_blocks(fn, rows, block_rows: int | None) -> jax.Array:
  """fn over a pytree of [M, ...] rows, in blocks of block_rows: -> [M].

  fn maps a pytree of [B, ...] rows to [B]. With M > block_rows the rows go
  through `lax.map` in blocks (read in place with `dynamic_slice`, the last
  partial block separately), so the kernel's [B, S] intermediates stay in
  cache instead of round-tripping through DRAM: at M = 1e5, S = 64 the
  exact kernel runs ~5x faster than in one piece (measured on CPU). Under
  `jax.vmap` over queries each block also serves every query while it is in
  cache.
  """
  m = jax.tree.leaves(rows)[0].shape[0]
  if block_rows is None or m <= block_rows:
    return fn(rows)
  num_blocks, tail = divmod(m, block_rows)

  def block(i):
    return fn(
        jax.tree.map(
            lambda x: lax.dynamic_slice_in_dim(x, i * block_rows, block_rows),
            rows,
        )
    )

  out = lax.map(block, jnp.arange(num_blocks)).reshape(-1)
  if tail:
    last = jax.tree.map(lambda x: x[num_blocks * block_rows :], rows)
    out = jnp.concatenate([out, fn(last)])
  return out


def memory_similarity(
    query_views: Sequence[TokenSet],
    memory_views: Sequence[TokenSet],
    weights,
    *,
    method: str = "hash",
    block_rows: int | None = 4096,
    floors=None,
) -> jax.Array:
  """Weighted Jaccard of one query against every memory row.

  sim[m] = sum_v w_v * J(q_v, memory_v[m]), by `jax.vmap` of
  `weighted_jaccard` over memory rows (the query's hash table is built once
  per block of rows). Invalid rows are not masked here (see `retrieval`).
  A concrete query is checked for duplicate ids (see `jaccard`); memory
  rows are not (a host-side check of M = 1e5 rows would cost about as much
  as the scan): they are assumed to come from `token_sets`.

  Args:
    query_views: V TokenSets, view v with ids [S_v], counts [S_v].
    memory_views: V TokenSets, view v with ids [M, S_v'], counts [M, S_v'].
    weights: [V] float weights.
    method: see `jaccard`.
    block_rows: rows per block (see `_map_blocks`); None: one piece.
    floors: None, or [V] per-view minimum Jaccard (`weighted_jaccard`).

  Returns:
    [M] float32.
  """
  for v, mv in enumerate(memory_views):
    if jnp.ndim(mv.ids) != 2:
      raise ValueError(
          f"memory view {v} ids must be [M, S], got {jnp.shape(mv.ids)}"
      )
  fn = jax.vmap(
      lambda entry: weighted_jaccard(
          query_views, entry, weights, method=method, floors=floors
      )
  )
  return _map_blocks(fn, tuple(memory_views), block_rows)


# ---------------------------------------------------------------- bitsets --


def _check_n_bits(n_bits: int) -> int:
  log2 = int(np.log2(n_bits)) if n_bits > 0 else -1
  if n_bits < 32 or (1 << log2) != n_bits:
    raise ValueError(f"n_bits must be a power of two >= 32, got {n_bits}")
  return log2


def to_bitset(ts: TokenSet, *, n_bits: int = 2048) -> jax.Array:
  """Hashes a token set into a fixed-width bitset (set form).

  Bit of id x: the top log2(n_bits) bits of uint32(x) * 0x9E3779B1
  (multiplicative hashing), so sequential tokenizer ids spread out as well as
  hashed n-gram ids. Counts are ignored (a multiset becomes its support).
  Bit b lives in word b // 32 at position b % 32.

  Args:
    ts: TokenSet with ids [S] (negative ids ignored).
    n_bits: power of two >= 32.

  Returns:
    [n_bits // 32] uint32. Use `jax.vmap` for stacked sets.
  """
  log2 = _check_n_bits(n_bits)
  ids = jnp.asarray(ts.ids)
  if ids.ndim != 1:
    raise ValueError(f"ids must be [S], got {ids.shape}; use jax.vmap")
  bit = _multiply_shift(ids, _MULT, log2)
  bit = jnp.where(ids >= 0, bit, n_bits)
  bits = (
      jnp.zeros((n_bits,), jnp.uint32).at[bit].max(jnp.uint32(1), mode="drop")
  )
  bits = bits.reshape(n_bits // 32, 32) << jnp.arange(32, dtype=jnp.uint32)
  return jnp.sum(bits, axis=-1, dtype=jnp.uint32)  # distinct powers: an OR.


def _popcount_sums(a: jax.Array, b: jax.Array):
  """popcount(a & b), popcount(a | b), popcount(a), each summed over [W].

  Written as W unrolled adds over word slices of the *inputs* rather than
  `jnp.sum(lax.population_count(a & b))`, which XLA:CPU runs as a slow
  small-axis reduction when vmapped over many pairs.

  Args:
    a: [W] uint32.
    b: [W] uint32.

  Returns:
    Three [] int32.
  """
  pc = lambda x: lax.population_count(x).astype(jnp.int32)
  inter, union, count_a = pc(a[0] & b[0]), pc(a[0] | b[0]), pc(a[0])
  for w in range(1, a.shape[-1]):
    inter = inter + pc(a[w] & b[w])
    union = union + pc(a[w] | b[w])
    count_a = count_a + pc(a[w])
  return inter, union, count_a


def _check_bitsets(a: jax.Array, b: jax.Array) -> None:
  if jnp.ndim(a) != 1 or jnp.shape(a) != jnp.shape(b):
    raise ValueError(
        f"bitsets must both be [W], got {jnp.shape(a)} and {jnp.shape(b)};"
        " use jax.vmap for stacked bitsets."
    )


def bitset_jaccard(a: jax.Array, b: jax.Array) -> jax.Array:
  """Approximate set Jaccard from two bitsets: popcount(a&b) / popcount(a|b).

  Error. Let U = |A u B| and c = |A n B| of the underlying id sets,
  J = c / U, and D = U - popcount(a | b) >= 0 the number of union elements
  lost to bit collisions. Merging two groups of colliding elements changes
  the count of bits set in both a and b by -1, 0 or +1, so

    J - D (1 - J) / (U - D)  <=  estimate  <=  J + D (1 + J) / (U - D).

  Under ideal hashing into n = n_bits bits, E[D] = U - n (1 - (1 - 1/n)**U)
  ~= U (U - 1) / (2 n): for two disjoint 64-id sets and n = 2048, E[D] ~= 4,
  and identical sets always give exactly 1. Most collisions raise the
  estimate (a shared id with an unshared one, or an A-only id with a B-only
  one), but NOT all: two *shared* ids on one bit lower it, e.g. A = {x, y,
  z}, B = {x, y} with x, y on one bit gives 1/2 < J = 2/3. So this ratio can
  under-estimate; `bitset_jaccard_upper_bound` is the one-sided variant.

  Args:
    a: [W] uint32 bitset from `to_bitset`.
    b: [W] uint32 bitset, same W.

  Returns:
    [] float32 in [0, 1]; 0 when both are empty.
  """
  _check_bitsets(a, b)
  inter, union, _ = _popcount_sums(a, b)
  return _safe_ratio(
      inter.astype(jnp.float32), union.astype(jnp.float32)
  ).astype(jnp.float32)


def bitset_jaccard_upper_bound(
    a: jax.Array, b: jax.Array, size_a, size_b
) -> jax.Array:
  """An estimate from bitsets that never under-estimates the set Jaccard.

  With pa = popcount(a), pb = popcount(b), i = popcount(a & b) and exact set
  sizes |A|, |B|: the shared ids occupy at most i bits, and shared ids that
  collide with each other are collisions inside A (and inside B), of which
  there are |A| - pa (and |B| - pb). So

    |A n B| <= I+ = min(i + min(|A| - pa, |B| - pb), |A|, |B|)

  and J+ = I+ / (|A| + |B| - I+) >= J, J+ being increasing in I+. The cost
  is the same scan as `bitset_jaccard` (pb = popcount(a | b) + i - pa).
  Useful as a pre-filter that never drops a true neighbour.

  Args:
    a: [W] uint32 bitset of set A.
    b: [W] uint32 bitset of set B.
    size_a: [] int, |A| (number of distinct valid ids).
    size_b: [] int, |B|.

  Returns:
    [] float32 in [0, 1], >= the exact set Jaccard of A and B.
  """
  _check_bitsets(a, b)
  inter, union, pa = _popcount_sums(a, b)
  pb = union + inter - pa
  size_a = jnp.asarray(size_a, jnp.int32)
  size_b = jnp.asarray(size_b, jnp.int32)
  upper = inter + jnp.minimum(size_a - pa, size_b - pb)
  upper = jnp.minimum(upper, jnp.minimum(size_a, size_b))
  den = size_a + size_b - upper
  return _safe_ratio(upper.astype(jnp.float32), den.astype(jnp.float32)).astype(
      jnp.float32
  )


def expected_bitset_collisions(union_size, n_bits: int):
  """E[D] = U - n (1 - (1 - 1/n)**U): union ids lost to collisions.

  Args:
    union_size: U = |A u B| (scalar or array, NumPy or JAX).
    n_bits: n, the bitset width.

  Returns:
    The expected D under ideal hashing, same shape as union_size.
  """
  n = float(n_bits)
  return union_size - n * (1.0 - (1.0 - 1.0 / n) ** union_size)


class BitsetMatrix(NamedTuple):
  """The bitsets of M sets, word-major, with their popcounts."""

  words: jax.Array  # [W, M] uint32: column m is set m's bitset
  popcounts: jax.Array  # [M] int32: bits set in column m


def bitset_matrix(sets: TokenSet, *, n_bits: int = 2048) -> BitsetMatrix:
  """`to_bitset` of each of M stacked sets, as a `BitsetMatrix`.

  Args:
    sets: TokenSet with ids [M, S], counts [M, S].
    n_bits: power of two >= 32.

  Returns:
    BitsetMatrix with words [n_bits // 32, M] and popcounts [M].
  """
  if jnp.ndim(sets.ids) != 2:
    raise ValueError(f"sets must have ids [M, S], got {jnp.shape(sets.ids)}")
  words = jax.vmap(lambda ts: to_bitset(ts, n_bits=n_bits), out_axes=1)(sets)
  popcounts = jnp.sum(
      lax.population_count(words).astype(jnp.int32), axis=0, dtype=jnp.int32
  )
  return BitsetMatrix(words, popcounts)


def memory_bitset_similarity(
    query_bitsets: Sequence[jax.Array],
    memory_bitsets: Sequence[BitsetMatrix],
    weights,
) -> jax.Array:
  """Weighted bitset Jaccard of one query against every memory entry.

  sim[m] = sum_v w_v * bitset_jaccard(q_v, words_v[:, m]) = sum_v w_v i /
  (|q_v| + popcounts_v[m] - i) with i = popcount(q_v & words_v[:, m]): W
  unrolled adds over contiguous [M] word rows, one popcount a word, in one
  streaming pass (blocking the entries for cache measured slower, for one
  query and for 32 vmapped ones).

  Args:
    query_bitsets: V arrays [W_v] uint32 from `to_bitset`.
    memory_bitsets: V `BitsetMatrix`es, words [W_v, M] (from
      `bitset_matrix`, or `retrieval.memory_bitsets`).
    weights: [V] float weights.

  Returns:
    [M] float32.
  """
  if len(query_bitsets) != len(memory_bitsets):
    raise ValueError(
        f"{len(query_bitsets)} query bitsets but {len(memory_bitsets)} memory"
        " bitsets"
    )
  weights = _check_weights(weights, len(query_bitsets))
  sizes = set()
  for v, (q, mem) in enumerate(zip(query_bitsets, memory_bitsets)):
    if not isinstance(mem, BitsetMatrix):
      raise TypeError(
          f"view {v}: memory bitsets must be a BitsetMatrix (from"
          f" bitset_matrix), got {type(mem).__name__}"
      )
    words = mem.words
    if jnp.ndim(q) != 1 or jnp.ndim(words) != 2 or words.shape[0] != q.shape[0]:
      raise ValueError(
          f"view {v}: memory bitset words {jnp.shape(words)} do not match the"
          f" query bitset {jnp.shape(q)} as [W, M] (word-major) and [W]"
      )
    sizes.add(words.shape[1])
  if len(sizes) != 1:
    raise ValueError(f"views disagree on the number of entries: {sizes}")

  pc = lambda x: lax.population_count(x).astype(jnp.int32)
  total = jnp.zeros((sizes.pop(),), jnp.float32)
  for v, (q, mem) in enumerate(zip(query_bitsets, memory_bitsets)):
    inter = pc(q[0] & mem.words[0])
    for w in range(1, q.shape[0]):
      inter = inter + pc(q[w] & mem.words[w])
    union = jnp.sum(pc(q)) + mem.popcounts - inter
    sim = _safe_ratio(inter.astype(jnp.float32), union.astype(jnp.float32))
    total = total + weights[v] * sim
  return total
