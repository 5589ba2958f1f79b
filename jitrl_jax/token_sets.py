"""Token sets: texts as fixed-shape, padded int32 id sets.

JitRL (arXiv 2601.18510, docs/method.md section 2) compares agent states through
the Jaccard similarity of token sets. A state has one or more *views* (current
observation, history, task), and each view becomes a `TokenSet`: a fixed-size
array of sorted, unique int32 ids padded with `PAD` (-1) at the end, plus the
multiplicity of each id.

Ids are either

* word n-grams hashed with `stable_hash` (blake2b, so the same text gives the
  same id on every machine, Python version and run, unlike Python's salted
  `hash`), or
* the ids of an LM tokenizer.

A view is a *set* (every count is 1) or a *multiset* (counts are the number of
occurrences). Text processing is host side (Python, NumPy); `as_token_set` is
the device-side, fixed-shape equivalent for ids that already live in a
`jax.Array`.

Truncation: when a text has more distinct ids than the set size S, both
`token_set` and `as_token_set` keep the S *smallest* ids. For hashed ids this
is a bottom-S sketch: a pseudo-random subset chosen consistently for every
text, so two truncated sets still share their common small ids.

Dimension letters: S set size, L length of an unsorted id sequence, N number
of stacked sets.
"""

import hashlib
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PAD = -1
# Hashed ids lie in [0, HASH_MODULUS).
HASH_MODULUS = 2**31 - 1
# Sorts after every valid id; used to push padding to the end of a sort.
_SENTINEL = np.iinfo(np.int32).max


class TokenSet(NamedTuple):
  """One view of one state as a padded id set.

  Stacking adds leading axes: a memory view has ids [M, S], counts [M, S].
  """

  ids: Any  # [S] int32, sorted ascending unique ids, then PAD (-1) padding.
  counts: Any  # [S] float32, multiplicity of each id; 0.0 at padding.


def stable_hash(token: str) -> int:
  """Deterministic 31-bit hash of a string.

  h(token) = int_le(blake2b_64(utf8(token))) mod (2**31 - 1). Unlike Python's
  built-in `hash`, this does not depend on PYTHONHASHSEED, the machine or the
  Python version.

  Args:
    token: any string.

  Returns:
    An int in [0, 2**31 - 1).
  """
  digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little") % HASH_MODULUS


def words(text: str, *, reference_filter: bool = False) -> list[str]:
  """Lowercases and splits a text on whitespace.

  Args:
    text: the text.
    reference_filter: if True, drop every word that contains a character that
      is not alphanumeric, as the reference code does. Note that this removes
      most of a location path such as `kitchen->attic` and every word followed
      by punctuation (`door.`).

  Returns:
    The list of words, in order, duplicates kept.
  """
  out = text.lower().split()
  if reference_filter:
    out = [w for w in out if w.isalnum()]
  return out


def word_ngram_ids(
    text: str, n: int, *, reference_filter: bool = False
) -> np.ndarray:
  """Hashed word n-grams of a text, in order, duplicates kept.

  An n-gram is its n words joined by one space, hashed with `stable_hash`.
  When the text has fewer than n words (but at least one), its unigrams are
  used instead, as in the reference.

  Args:
    text: the text.
    n: the n-gram order, >= 1.
    reference_filter: see `words`.

  Returns:
    [L] int32 ids, L = num_words - n + 1 (num_words for the unigram
    fallback); empty for a text with no words.
  """
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  ws = words(text, reference_filter=reference_filter)
  if len(ws) < n:
    n = 1
  grams = [" ".join(ws[i : i + n]) for i in range(len(ws) - n + 1)]
  return np.asarray([stable_hash(g) for g in grams], dtype=np.int32)


def token_set(ids, size: int, *, multiset: bool = True) -> TokenSet:
  """Host-side padded id set from a sequence of ids.

  Negative ids (PAD included) are ignored. If there are more than `size`
  distinct ids, the `size` smallest are kept (see the module docstring).

  Args:
    ids: [L] integer ids, any order, duplicates allowed.
    size: S, the fixed set size.
    multiset: if True, counts are the number of occurrences; else 1.

  Returns:
    TokenSet of NumPy arrays: ids [S] int32, counts [S] float32.
  """
  ids = np.asarray(ids, dtype=np.int64).reshape(-1)
  ids = ids[ids >= 0]
  if ids.size and ids.max() > _SENTINEL - 1:
    raise ValueError("ids must be < 2**31 - 1")
  uniq, cnt = np.unique(ids, return_counts=True)
  uniq, cnt = uniq[:size], cnt[:size]
  out_ids = np.full((size,), PAD, dtype=np.int32)
  out_counts = np.zeros((size,), dtype=np.float32)
  out_ids[: uniq.size] = uniq
  out_counts[: uniq.size] = cnt if multiset else 1.0
  return TokenSet(out_ids, out_counts)


def text_token_set(
    text: str,
    *,
    n: int,
    size: int,
    multiset: bool = True,
    reference_filter: bool = False,
) -> TokenSet:
  """Padded id set of a text's hashed word n-grams.

  Args:
    text: the text.
    n: n-gram order (falls back to unigrams for texts shorter than n words).
    size: S, the fixed set size.
    multiset: count repeated n-grams (True) or keep each once (False).
    reference_filter: see `words`.

  Returns:
    TokenSet of NumPy arrays: ids [S] int32, counts [S] float32.
  """
  ids = word_ngram_ids(text, n, reference_filter=reference_filter)
  return token_set(ids, size, multiset=multiset)


def tokenizer_token_set(
    tokenizer, text: str, *, size: int, multiset: bool = True
) -> TokenSet:
  """Padded id set of an LM tokenizer's ids for a text.

  Args:
    tokenizer: a Hugging Face tokenizer (`encode(text,
      add_special_tokens=False)` returns a list of ints), a
      `tokenizers.Tokenizer` (whose `encode` returns an object with `.ids`),
      or any object whose `encode(text)` returns a list of ints.
    text: the text.
    size: S, the fixed set size.
    multiset: count repeated ids (True) or keep each once (False).

  Returns:
    TokenSet of NumPy arrays: ids [S] int32, counts [S] float32.
  """
  try:
    encoded = tokenizer.encode(text, add_special_tokens=False)
  except TypeError:
    encoded = tokenizer.encode(text)
  ids = getattr(encoded, "ids", encoded)
  ids = np.asarray(list(ids), dtype=np.int64)
  return token_set(ids, size, multiset=multiset)


def stack_token_sets(sets: Sequence[TokenSet]) -> TokenSet:
  """Stacks N same-size token sets into one with a leading axis.

  Args:
    sets: N TokenSets with ids [S], counts [S].

  Returns:
    TokenSet of NumPy arrays: ids [N, S] int32, counts [N, S] float32.
  """
  return TokenSet(
      np.stack([np.asarray(s.ids, dtype=np.int32) for s in sets]),
      np.stack([np.asarray(s.counts, dtype=np.float32) for s in sets]),
  )


def as_token_set(
    ids: jax.Array, *, size: int, multiset: bool = True
) -> TokenSet:
  """Device-side, fixed-shape padded id set (sort + unique + counts).

  Negative ids (PAD) are ignored; if there are more than `size` distinct ids
  the `size` smallest are kept, like the host-side `token_set`. Jit-friendly:
  `size` is static, the output shape does not depend on the values.

  Args:
    ids: [L] integer ids with PAD (-1) padding, any order, duplicates allowed.
    size: S, the fixed output size.
    multiset: counts are occurrences (True) or 1 (False).

  Returns:
    TokenSet: ids [S] int32 sorted unique then PAD, counts [S] float32.
  """
  ids = jnp.asarray(ids).astype(jnp.int32)
  if ids.ndim != 1:
    raise ValueError(f"ids must be [L], got shape {ids.shape}")
  x = jnp.sort(jnp.where(ids < 0, _SENTINEL, ids))
  valid = x != _SENTINEL
  is_first = valid & jnp.concatenate([jnp.ones((1,), bool), x[1:] != x[:-1]])
  # Output slot of each element: rank of its distinct value.
  slot = jnp.cumsum(is_first.astype(jnp.int32)) - 1
  drop = jnp.int32(size)  # out of range: dropped by the scatters below.
  out_ids = (
      jnp.full((size,), PAD, jnp.int32)
      .at[jnp.where(is_first, slot, drop)]
      .set(x, mode="drop")
  )
  if multiset:
    out_counts = (
        jnp.zeros((size,), jnp.float32)
        .at[jnp.where(valid, slot, drop)]
        .add(1.0, mode="drop")
    )
  else:
    out_counts = (out_ids != PAD).astype(jnp.float32)
  return TokenSet(out_ids, out_counts)
