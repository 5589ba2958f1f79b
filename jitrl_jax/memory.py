"""Experience memory: a fixed-capacity ring buffer of (state, action, return).

JitRL (arXiv 2601.18510, docs/method.md sections 4 and 8) keeps a non-parametric
memory of past steps. One entry holds the state's views (padded token sets),
the action taken (its `stable_hash` id), the return that followed, the step
reward, and the task and episode it came from. The memory has a fixed
capacity M so that every array keeps its shape under `jax.jit`: a `valid`
mask marks filled rows, and once full the oldest entry is overwritten first
(ring buffer). `inserted_at` records the insertion counter, used as recency
by retrieval's tie-break.

Entries are written at episode end (`add_episode`), so nothing from the
running episode is retrievable before it ends, as in the reference.

`save` / `load` persist a memory as an .npz file, atomically (temporary file
in the same directory, fsync, `os.replace`), with a format version and a
field check; any unreadable, truncated or incompatible file raises
`MemoryFileError` naming the path. Loading never modifies the file.

Dimension letters: M capacity, S_v set size of view v, T episode length.
"""

import json
import os
from typing import Any, NamedTuple, Sequence
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import io as io_lib
from jitrl_jax import token_sets

TokenSet = token_sets.TokenSet
PAD = token_sets.PAD

FORMAT_NAME = "jitrl_jax.memory"
FORMAT_VERSION = 1


class MemoryFileError(ValueError):
  """A memory file is unreadable, truncated, corrupt or incompatible."""


class MemoryState(NamedTuple):
  """Fixed-capacity experience memory (a ring buffer)."""

  views: tuple  # V TokenSets, each ids [M, S_v] int32, counts [M, S_v] f32.
  action_ids: jax.Array  # [M] int32, stable_hash of the action string.
  returns: jax.Array  # [M] float32.
  rewards: jax.Array  # [M] float32, step reward that produced the return.
  task_ids: jax.Array  # [M] int32.
  episode_ids: jax.Array  # [M] int32.
  inserted_at: jax.Array  # [M] int32 insertion counter (recency); -1 empty.
  valid: jax.Array  # [M] bool.
  cursor: jax.Array  # [] int32, next write slot.
  num_inserted: jax.Array  # [] int32, total ever inserted.


def init(capacity: int, view_sizes: Sequence[int]) -> MemoryState:
  """An empty memory.

  Args:
    capacity: M >= 1, the number of entries kept.
    view_sizes: (S_1, ..., S_V), the set size of each view.

  Returns:
    MemoryState with every row invalid: ids PAD, counts 0, inserted_at -1,
    task_ids and episode_ids -1, cursor 0, num_inserted 0.
  """
  if capacity < 1:
    raise ValueError(f"capacity must be >= 1, got {capacity}")
  if not view_sizes:
    raise ValueError("need at least one view")
  views = tuple(
      TokenSet(
          jnp.full((capacity, s), PAD, jnp.int32),
          jnp.zeros((capacity, s), jnp.float32),
      )
      for s in view_sizes
  )
  return MemoryState(
      views=views,
      action_ids=jnp.zeros((capacity,), jnp.int32),
      returns=jnp.zeros((capacity,), jnp.float32),
      rewards=jnp.zeros((capacity,), jnp.float32),
      task_ids=jnp.full((capacity,), -1, jnp.int32),
      episode_ids=jnp.full((capacity,), -1, jnp.int32),
      inserted_at=jnp.full((capacity,), -1, jnp.int32),
      valid=jnp.zeros((capacity,), bool),
      cursor=jnp.zeros((), jnp.int32),
      num_inserted=jnp.zeros((), jnp.int32),
  )


def capacity(memory: MemoryState) -> int:
  """M, the static capacity."""
  return memory.valid.shape[0]


def size(memory: MemoryState) -> jax.Array:
  """Number of valid entries: [] int32, min(num_inserted, M)."""
  return jnp.sum(memory.valid, dtype=jnp.int32)


def _check_views(memory: MemoryState, views, lead: tuple) -> None:
  """Raises ValueError unless views match the memory's, with `lead` axes."""
  if len(views) != len(memory.views):
    raise ValueError(f"memory has {len(memory.views)} views, got {len(views)}")
  for v, (new, old) in enumerate(zip(views, memory.views)):
    want = lead + old.ids.shape[1:]
    chex.assert_shape(
        [jnp.asarray(new.ids), jnp.asarray(new.counts)],
        want,
        custom_message=f"view {v}: expected ids and counts of shape {want}",
        exception_type=ValueError,
    )


def add(
    memory: MemoryState,
    views: Sequence[TokenSet],
    action_id,
    ret,
    reward,
    task_id,
    episode_id,
) -> MemoryState:
  """Writes one entry at the cursor (overwriting the oldest when full).

  Args:
    memory: the memory.
    views: V TokenSets, view v with ids [S_v], counts [S_v].
    action_id: [] int32 action id.
    ret: [] float return.
    reward: [] float step reward.
    task_id: [] int32.
    episode_id: [] int32.

  Returns:
    The new MemoryState; cursor advanced by 1 (mod M).
  """
  _check_views(memory, views, ())
  i = memory.cursor
  new_views = tuple(
      TokenSet(
          old.ids.at[i].set(jnp.asarray(new.ids, jnp.int32)),
          old.counts.at[i].set(jnp.asarray(new.counts, jnp.float32)),
      )
      for new, old in zip(views, memory.views)
  )
  return MemoryState(
      views=new_views,
      action_ids=memory.action_ids.at[i].set(action_id),
      returns=memory.returns.at[i].set(ret),
      rewards=memory.rewards.at[i].set(reward),
      task_ids=memory.task_ids.at[i].set(task_id),
      episode_ids=memory.episode_ids.at[i].set(episode_id),
      inserted_at=memory.inserted_at.at[i].set(memory.num_inserted),
      valid=memory.valid.at[i].set(True),
      cursor=(memory.cursor + 1) % capacity(memory),
      num_inserted=memory.num_inserted + 1,
  )


def add_episode(
    memory: MemoryState,
    views: Sequence[TokenSet],
    action_ids: jax.Array,
    returns: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    task_id,
    episode_id,
) -> MemoryState:
  """Writes the masked steps of one episode, in order, in one scatter.

  Equivalent to calling `add` for every t with mask[t] True, in increasing
  t: the k-th kept step goes to slot (cursor + k) mod M with inserted_at =
  num_inserted + k. When more than M steps are kept, only the last M
  survive, as with sequential writes (earlier ones are dropped up front so
  that the scatter's indices are distinct).

  Args:
    memory: the memory.
    views: V TokenSets, view v with ids [T, S_v], counts [T, S_v].
    action_ids: [T] int32.
    returns: [T] float32.
    rewards: [T] float32.
    mask: [T] bool, True for real steps (padding steps are skipped).
    task_id: [] int32, for every step.
    episode_id: [] int32, for every step.

  Returns:
    The new MemoryState.
  """
  mask = jnp.asarray(mask, bool)
  if mask.ndim != 1:
    raise ValueError(f"mask must be [T], got {mask.shape}")
  t = mask.shape[0]
  _check_views(memory, views, (t,))
  for name, x in (
      ("action_ids", action_ids),
      ("returns", returns),
      ("rewards", rewards),
  ):
    if jnp.shape(x) != (t,):
      raise ValueError(f"{name} must be [{t}], got {jnp.shape(x)}")
  m = capacity(memory)
  k = jnp.cumsum(mask.astype(jnp.int32)) - 1  # rank among kept steps.
  n = jnp.sum(mask, dtype=jnp.int32)
  keep = mask & (k >= n - m)  # the last M kept steps.
  slot = jnp.where(keep, (memory.cursor + k) % m, m)  # m: dropped.

  def put(old, new):
    return old.at[slot].set(jnp.asarray(new).astype(old.dtype), mode="drop")

  def fill(old, value):
    value = jnp.broadcast_to(jnp.asarray(value, old.dtype), (t,))
    return put(old, value)

  new_views = tuple(
      TokenSet(put(old.ids, new.ids), put(old.counts, new.counts))
      for new, old in zip(views, memory.views)
  )
  return MemoryState(
      views=new_views,
      action_ids=put(memory.action_ids, action_ids),
      returns=put(memory.returns, returns),
      rewards=put(memory.rewards, rewards),
      task_ids=fill(memory.task_ids, task_id),
      episode_ids=fill(memory.episode_ids, episode_id),
      inserted_at=put(memory.inserted_at, memory.num_inserted + k),
      valid=fill(memory.valid, True),
      cursor=(memory.cursor + n) % m,
      num_inserted=memory.num_inserted + n,
  )


# ------------------------------------------------------------ persistence --

_FIELDS_1D = {
    "action_ids": np.int32,
    "returns": np.float32,
    "rewards": np.float32,
    "task_ids": np.int32,
    "episode_ids": np.int32,
    "inserted_at": np.int32,
    "valid": np.bool_,
}
_FIELDS_0D = {"cursor": np.int32, "num_inserted": np.int32}


def save(
    memory: MemoryState, path, *, metadata: dict[str, Any] | None = None
) -> None:
  """Saves a memory to an .npz file, atomically.

  The arrays go to a temporary file in the same directory, which is flushed,
  fsynced and then renamed over `path` with `os.replace`: a reader sees
  either the old file or the complete new one, never a partial write.

  Args:
    memory: the memory.
    path: destination file (the name is used as is; no suffix is added).
    metadata: optional JSON-serialisable dict stored alongside.
  """
  path = os.fspath(path)
  try:
    meta_json = json.dumps(metadata or {})
  except TypeError as e:
    raise ValueError(f"metadata must be JSON-serialisable: {e}") from e
  arrays = {
      "format_name": np.asarray(FORMAT_NAME),
      "format_version": np.asarray(FORMAT_VERSION, np.int32),
      "num_views": np.asarray(len(memory.views), np.int32),
      "metadata_json": np.asarray(meta_json),
  }
  for v, view in enumerate(memory.views):
    arrays[f"view{v}_ids"] = np.asarray(view.ids, np.int32)
    arrays[f"view{v}_counts"] = np.asarray(view.counts, np.float32)
  for name, dtype in {**_FIELDS_1D, **_FIELDS_0D}.items():
    arrays[name] = np.asarray(getattr(memory, name), dtype)
  with io_lib.atomic_open(path, "wb") as f:
    np.savez(f, **arrays)


def _is_int_scalar(x: np.ndarray) -> bool:
  """A 0-d array of a signed or unsigned integer dtype (not bool)."""
  return x.shape == () and x.dtype.kind in "iu"


def _check_content(fields, views, fail) -> None:
  """Raises `fail(...)` on values that parse but that retrieval assumes away.

  On valid rows: returns and rewards finite; inserted_at in [0,
  num_inserted); every view row a set as `token_sets` writes it (ids >= 0
  strictly ascending, then padding -1 with count 0; counts finite and > 0
  on ids).
  """
  valid = fields["valid"]
  for name in ("returns", "rewards"):
    bad = valid & ~np.isfinite(fields[name])
    if bad.any():
      raise fail(f"non-finite {name} in {int(bad.sum())} valid entries")
  at = fields["inserted_at"][valid]
  if at.size and (at.min() < 0 or at.max() >= int(fields["num_inserted"])):
    raise fail(
        f"inserted_at outside [0, num_inserted={int(fields['num_inserted'])})"
    )
  for v, (ids, counts) in enumerate(views):
    ids, counts = ids[valid], counts[valid]
    real = ids >= 0
    if ((ids < 0) & (ids != token_sets.PAD)).any():
      raise fail(f"view {v}: negative ids other than the padding -1")
    if (real[:, 1:] & ~real[:, :-1]).any():
      raise fail(f"view {v}: an id after padding in a set row")
    if (real[:, 1:] & (np.diff(ids, axis=1) <= 0)).any():
      raise fail(f"view {v}: ids not strictly ascending (unsorted or repeated)")
    if (~np.isfinite(counts)).any() or (counts[real] <= 0).any():
      raise fail(f"view {v}: counts must be finite and > 0 on ids")
    if (counts[~real] != 0).any():
      raise fail(f"view {v}: padding with a non-zero count")


def load(
    path, *, view_sizes: Sequence[int] | None = None
) -> tuple[MemoryState, dict[str, Any]]:
  """Loads a memory saved by `save`. Never modifies or deletes the file.

  Beyond the structure, the content is checked: finite returns, insertion
  stamps below the insertion counter, and set rows as `token_sets` writes
  them (see `_check_content`); retrieval assumes all of these.

  Args:
    path: the .npz file.
    view_sizes: the set size S of each view the caller expects (a run's
      config); None accepts the file's.

  Returns:
    (MemoryState with device arrays, metadata dict).

  Raises:
    FileNotFoundError: no file at `path`.
    MemoryFileError: unreadable, truncated or corrupt file, another format,
      an unsupported format version, or missing / inconsistent fields. The
      message names the path.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no memory file at {path}")

  def fail(why: str) -> MemoryFileError:
    return MemoryFileError(f"{path}: {why}")

  try:
    with np.load(path, allow_pickle=False) as data:
      # Reading every member here checks each one's CRC.
      arrays = {name: data[name] for name in data.files}
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
    raise fail(f"not a readable memory file ({type(e).__name__}: {e})") from e
  except Exception as e:  # zlib.error and other decoder failures.
    raise fail(f"corrupt memory file ({type(e).__name__}: {e})") from e

  def get(name: str) -> np.ndarray:
    if name not in arrays:
      raise fail(f"missing field {name!r}")
    return arrays[name]

  if "format_name" not in arrays or str(arrays["format_name"]) != FORMAT_NAME:
    raise fail(f"not a {FORMAT_NAME} file")
  version = get("format_version")
  # An integer, exactly: int() would also take 1.9, 1.0, "1" or True.
  if not _is_int_scalar(version) or int(version) != FORMAT_VERSION:
    raise fail(
        f"unsupported format version {version.tolist()!r} (dtype"
        f" {version.dtype}); this code reads version {FORMAT_VERSION}, an"
        " integer"
    )
  try:
    metadata = json.loads(str(get("metadata_json")))
  except json.JSONDecodeError as e:
    raise fail(f"corrupt metadata ({e})") from e
  num_views = get("num_views")
  if not _is_int_scalar(num_views) or int(num_views) < 1:
    raise fail(
        f"bad num_views {num_views.tolist()!r} (dtype {num_views.dtype})"
    )
  valid = get("valid")
  if valid.ndim != 1 or valid.shape[0] < 1:
    raise fail(f"field 'valid' must be [M] with M >= 1, got {valid.shape}")
  m = valid.shape[0]

  def typed(name: str, shape: tuple, dtype) -> np.ndarray:
    x = get(name)
    if x.shape != shape:
      raise fail(f"field {name!r} has shape {x.shape}, expected {shape}")
    if np.dtype(dtype) == np.bool_:
      ok = x.dtype == np.bool_
    else:
      ok = np.dtype(x.dtype).kind == np.dtype(dtype).kind
    if not ok:
      raise fail(f"field {name!r} has dtype {x.dtype}, expected {dtype}")
    return x.astype(dtype)

  views = []
  for v in range(int(num_views)):
    ids = get(f"view{v}_ids")
    if ids.ndim != 2 or ids.shape[0] != m:
      raise fail(f"field 'view{v}_ids' must be [{m}, S], got {ids.shape}")
    views.append(
        TokenSet(
            jnp.asarray(typed(f"view{v}_ids", ids.shape, np.int32)),
            jnp.asarray(typed(f"view{v}_counts", ids.shape, np.float32)),
        )
    )
  fields = {n: typed(n, (m,), d) for n, d in _FIELDS_1D.items()}
  fields.update({n: typed(n, (), d) for n, d in _FIELDS_0D.items()})
  sizes = tuple(int(view.ids.shape[1]) for view in views)
  if view_sizes is not None and tuple(int(x) for x in view_sizes) != sizes:
    raise fail(
        f"view sizes {sizes} differ from the expected {tuple(view_sizes)} "
        "(a memory of another configuration)"
    )
  _check_content(
      fields, [(np.asarray(v.ids), np.asarray(v.counts)) for v in views], fail
  )
  if not 0 <= int(fields["cursor"]) < m:
    raise fail(f"cursor {int(fields['cursor'])} out of range [0, {m})")
  if int(fields["num_inserted"]) < int(fields["valid"].sum()):
    raise fail("num_inserted is smaller than the number of valid entries")
  memory = MemoryState(
      views=tuple(views), **{n: jnp.asarray(x) for n, x in fields.items()}
  )
  return memory, metadata
