r"""Memory sharded over a device mesh: distributed exact top-k retrieval.

A JitRL memory grows with experience; when one device cannot hold it (or
scan it fast enough), split it along its capacity axis M over the devices of
a `jax.sharding.Mesh`. Retrieval is then two steps under `jax.shard_map`:

1. local: every shard scores its M / D rows against the queries and keeps
   its own top K candidates with the rule of `retrieval.top_k_neighbours`
   (threshold, similarity > 0, order similarity desc, return desc, recency
   desc), with the shard's row indices offset to global ones;
2. global merge: the D * K candidates are `all_gather`-ed along the memory
   axis and ordered by the same key (a four-key `lax.sort`), and the first
   K are kept.

Every entry of the global top K is in its own shard's top K, so the result
is exactly the unsharded `retrieval.top_k_neighbours` (same indices,
similarities, action ids, returns and mask; masked slots are zeros), compared
under jit: an eager, op-by-op evaluation may round the weighted sum of view
similarities differently in the last bit (fused multiply-add), which can
swap near-ties; a jitted unsharded call and the sharded one agree bit for
bit (tests/sharding_test.py checks it on 8 CPU devices). The
exact tier (k_exact > 0) works the same way: each shard keeps k + k_exact
candidates and the exact-tier mask is applied after the merge.

Queries: a batch [B] of query views is either replicated (batch_axis=None:
every device sees every query, results replicated) or sharded along a second
mesh axis (batch_axis="batch": a 2-D mesh (batch, memory), each row of
devices handles B / D_batch queries against the whole memory, results
sharded along B).

  mesh = jax.make_mesh((2, 4), ("batch", "memory"))
  memory = sharding.shard_memory(memory, mesh)            # M split in 4
  retrieve = sharding.make_sharded_top_k(
      mesh, k=10, weights=(0.3, 0.7), batch_axis="batch")
  neighbours = retrieve(memory, query_views)              # fields [B, K]

On one host the devices are local (CPU tests fake 8 of them with
XLA_FLAGS=--xla_force_host_platform_device_count=8, which must be set before
JAX initialises). Multi-host: run the same program on every host after

  jax.distributed.initialize(coordinator_address="host0:1234",
                             num_processes=P, process_id=p)

(on TPU pods and SLURM / Open MPI clusters the arguments are found
automatically). `jax.devices()` then lists every host's devices, and
`jax.make_mesh` builds a global mesh over them; keep the memory axis within
a host, or across hosts on a fast interconnect, since only the D * K
candidates cross it. Each host builds its own rows of the global memory with
`jax.make_array_from_process_local_data(NamedSharding(mesh, spec), rows)`
(or `jax.make_array_from_callback`), for every field of `MemoryState` with
the specs of `memory_partition_specs`; the jitted retrieval is then called on
every process with the same arguments (SPMD), and its outputs are global
arrays (read them with `jax.experimental.multihost_utils.process_allgather`
or their addressable shards). Writes (`memory.add_episode`) on a sharded
memory are ordinary jitted updates of global arrays; the ring-buffer cursor
is replicated.

Dimension letters: M memory capacity, D devices along the memory axis,
B queries, K neighbours (k + k_exact), S set size.
"""

from __future__ import annotations

from typing import Sequence

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval
from jitrl_jax import similarity
from jitrl_jax import token_sets

try:  # jax >= 0.7 exports it at the top level.
  _shard_map = jax.shard_map
except AttributeError:  # pragma: no cover - older jax.
  from jax.experimental.shard_map import (  # pylint: disable=g-import-not-at-top
      shard_map as _shard_map,
  )

MemoryState = memory_lib.MemoryState
Neighbours = retrieval.Neighbours
TokenSet = token_sets.TokenSet


def memory_partition_specs(
    memory: MemoryState, *, memory_axis: str = "memory"
) -> MemoryState:
  """PartitionSpecs of a memory sharded along its capacity axis.

  Every [M, ...] field is split along M over `memory_axis`; the scalars
  (cursor, num_inserted) are replicated.

  Args:
    memory: a MemoryState (only its structure is used).
    memory_axis: the mesh axis name to shard M over.

  Returns:
    A MemoryState of PartitionSpecs with the same structure.
  """
  row = P(memory_axis)
  return MemoryState(
      views=tuple(TokenSet(row, row) for _ in memory.views),
      action_ids=row,
      returns=row,
      rewards=row,
      task_ids=row,
      episode_ids=row,
      inserted_at=row,
      valid=row,
      cursor=P(),
      num_inserted=P(),
  )


def _axis_size(mesh: Mesh, axis: str | None) -> int:
  if axis is None:
    return 1
  if axis not in mesh.shape:
    raise ValueError(f"mesh has axes {tuple(mesh.shape)}, not {axis!r}")
  return mesh.shape[axis]


def _shardings(mesh: Mesh, memory: MemoryState, memory_axis: str):
  specs = memory_partition_specs(memory, memory_axis=memory_axis)
  return jax.tree.map(
      lambda spec: NamedSharding(mesh, spec),
      specs,
      is_leaf=lambda x: isinstance(x, P),
  )


def shard_memory(
    memory: MemoryState, mesh: Mesh, *, memory_axis: str = "memory"
) -> MemoryState:
  """Places a memory on `mesh`, split along its capacity axis.

  Args:
    memory: a MemoryState with capacity M divisible by the size of
      `memory_axis`.
    mesh: the device mesh.
    memory_axis: the mesh axis to split M over.

  Returns:
    The same memory as global arrays with NamedShardings.

  Raises:
    ValueError: if M is not a multiple of the axis size.
  """
  d = _axis_size(mesh, memory_axis)
  m = memory_lib.capacity(memory)
  if m % d:
    raise ValueError(
        f"memory capacity {m} is not divisible by the {d} devices of mesh "
        f"axis {memory_axis!r}"
    )
  return jax.device_put(memory, _shardings(mesh, memory, memory_axis))


def _local_candidates(memory, sims, threshold, total: int, offset):
  """A shard's best `total` rows, in the retrieval order, as candidates.

  `retrieval.top_k_from_similarities` on the shard (threshold, similarity
  > 0, order similarity desc, return desc, recency desc), plus each row's
  recency for the global merge and the offset to global row indices.

  Args:
    memory: the local shard of the memory (M / D rows).
    sims: [M / D] float32 similarities of the shard's rows to the query.
    threshold: [] similarity threshold.
    total: static number of candidates K.
    offset: [] int32 global index of the shard's first row.

  Returns:
    (index, similarity, action_id, return, recency, mask), each [K]; index
    is global; masked slots are zeros.
  """
  nb = retrieval.top_k_from_similarities(
      memory, sims, k=total, threshold=threshold
  )
  zero = lambda x: jnp.where(nb.mask, x, jnp.zeros_like(x))
  return (
      zero(nb.indices + offset),
      nb.similarities,
      nb.action_ids,
      nb.returns.astype(jnp.float32),
      zero(memory.inserted_at[nb.indices]),
      nb.mask,
  )


def _merge(candidates, *, total: int, k: int, exact_threshold: float):
  """The first `total` of gathered candidates by the retrieval order.

  Args:
    candidates: (index, similarity, action_id, return, recency, mask), each
      [D * total].
    total: K = k + k_exact output slots.
    k: slots before the exact tier.
    exact_threshold: exact-tier bar (strictly above).

  Returns:
    Neighbours with fields [K].
  """
  index, sim, action, ret, rec, mask = candidates
  # The keys of retrieval's final sort: masked last, then similarity,
  # return and recency, all descending (recency is unique among real
  # entries, so the global index key only orders the masked slots).
  _, _, _, _, _, index, sim, action, ret = lax.sort(
      (
          (~mask).astype(jnp.int32),
          -sim,
          -ret,
          -rec,
          index,
          index,
          sim,
          action,
          ret,
      ),
      num_keys=5,
  )
  count = jnp.sum(mask, dtype=jnp.int32)
  slots = jnp.arange(total)
  out_mask = slots < count
  index, sim, action, ret = (
      index[:total],
      sim[:total],
      action[:total],
      ret[:total],
  )
  if total > k:
    out_mask = out_mask & ((slots < k) | (sim > exact_threshold))
  zero = lambda x: jnp.where(out_mask, x, jnp.zeros_like(x))
  return Neighbours(
      indices=zero(index),
      similarities=zero(sim),
      action_ids=zero(action),
      returns=zero(ret),
      mask=out_mask,
  )


def make_sharded_top_k(
    mesh: Mesh,
    *,
    k: int,
    weights,
    k_exact: int = 0,
    exact_threshold: float = 0.98,
    method: str = "hash",
    memory_axis: str = "memory",
    batch_axis: str | None = None,
):
  """A jitted distributed `top_k_neighbours` for a batch of queries.

  Args:
    mesh: the device mesh; it must have `memory_axis` (and `batch_axis` if
      given).
    k: static number of neighbours.
    weights: [V] view weights.
    k_exact: static size of the exact tier (output K = k + k_exact).
    exact_threshold: exact-tier bar.
    method: similarity kernel, see `similarity.jaccard`.
    memory_axis: mesh axis the memory's capacity is split over.
    batch_axis: mesh axis the queries are split over, or None to replicate
      the queries on every device.

  Returns:
    fn(memory, query_views, threshold=0.0) -> Neighbours with fields
    [B, K]; memory is a MemoryState of capacity M (divisible by the memory
    axis size; pass it through `shard_memory` to avoid a reshard per call),
    query_views V TokenSets with ids [B, S_v] (B divisible by the batch
    axis size), threshold a [] float (may change between calls without a
    recompile).
  """
  if k < 1 or k_exact < 0:
    raise ValueError(f"need k >= 1 and k_exact >= 0, got {k}, {k_exact}")
  d = _axis_size(mesh, memory_axis)
  db = _axis_size(mesh, batch_axis)
  total = k + k_exact
  weights = tuple(float(w) for w in weights)

  def local(memory, query_views, threshold):
    m_local = memory_lib.capacity(memory)
    offset = lax.axis_index(memory_axis).astype(jnp.int32) * m_local

    def one(query):
      sims = similarity.memory_similarity(
          query, memory.views, weights, method=method
      )
      return _local_candidates(memory, sims, threshold, total, offset)

    cands = jax.vmap(one)(query_views)  # each [B_local, K]
    cands = tuple(
        lax.all_gather(x, memory_axis, axis=1, tiled=True) for x in cands
    )  # each [B_local, D * K]
    merge = lambda *c: _merge(
        c, total=total, k=k, exact_threshold=exact_threshold
    )
    return jax.vmap(merge)(*cands)

  def run(memory, query_views, threshold=0.0):
    m = memory_lib.capacity(memory)
    if m % d:
      raise ValueError(
          f"memory capacity {m} is not divisible by the {d} devices of "
          f"mesh axis {memory_axis!r}"
      )
    query_views = tuple(query_views)
    b = query_views[0].ids.shape[0]
    if any(q.ids.ndim != 2 for q in query_views):
      raise ValueError("query views must be batched: ids [B, S]")
    if b % db:
      raise ValueError(
          f"batch {b} is not divisible by the {db} devices of mesh axis "
          f"{batch_axis!r}"
      )
    q_spec = P(batch_axis)
    # Explicit-axis meshes (jax.make_mesh's default) want the inputs laid
    # out as the specs say; device_put is a no-op when they already are.
    memory = jax.device_put(memory, _shardings(mesh, memory, memory_axis))
    query_views = jax.device_put(query_views, NamedSharding(mesh, q_spec))
    fn = _shard_map(
        local,
        mesh=mesh,
        in_specs=(
            memory_partition_specs(memory, memory_axis=memory_axis),
            tuple(TokenSet(q_spec, q_spec) for _ in query_views),
            P(),
        ),
        out_specs=Neighbours(*([q_spec] * 5)),
        check_vma=False,
    )
    return fn(memory, query_views, jnp.asarray(threshold, jnp.float32))

  return jax.jit(run)


def sharded_top_k_neighbours(
    memory: MemoryState,
    query_views: Sequence[TokenSet],
    *,
    mesh: Mesh,
    k: int,
    weights,
    threshold=0.0,
    k_exact: int = 0,
    exact_threshold: float = 0.98,
    method: str = "hash",
    memory_axis: str = "memory",
    batch_axis: str | None = None,
) -> Neighbours:
  """One-shot form of `make_sharded_top_k` (builds and calls it).

  For repeated calls build the function once with `make_sharded_top_k`.

  Args:
    memory: MemoryState, capacity divisible by the memory axis size.
    query_views: V TokenSets with ids [B, S_v].
    mesh: the device mesh.
    k: number of neighbours.
    weights: [V] view weights.
    threshold: [] similarity threshold.
    k_exact: exact-tier size.
    exact_threshold: exact-tier bar.
    method: similarity kernel.
    memory_axis: mesh axis of the memory's capacity.
    batch_axis: mesh axis of the queries, or None (replicated).

  Returns:
    Neighbours with fields [B, k + k_exact], equal to
    `jax.vmap(retrieval.top_k_neighbours)` on the unsharded memory.
  """
  fn = make_sharded_top_k(
      mesh,
      k=k,
      weights=weights,
      k_exact=k_exact,
      exact_threshold=exact_threshold,
      method=method,
      memory_axis=memory_axis,
      batch_axis=batch_axis,
  )
  return fn(memory, query_views, threshold)
