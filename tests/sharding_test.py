"""Tests for jitrl_jax/sharding.py: sharded retrieval equals unsharded.

The multi-device checks need XLA_FLAGS=--xla_force_host_platform_device_count
=8 before JAX initialises, so they run in a subprocess with that environment.
"""

import os
import subprocess
import sys
import textwrap

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval
from jitrl_jax import sharding
from jitrl_jax import token_sets

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Shared by the in-process test and the subprocess: a memory with many ties
# (small vocabulary -> tied similarities; integer returns -> tied returns).
_SETUP = textwrap.dedent("""\
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jitrl_jax import memory as memory_lib
    from jitrl_jax import retrieval
    from jitrl_jax import sharding
    from jitrl_jax import token_sets

    def random_views(rng, n, sizes, vocab):
      views = []
      for s in sizes:
        sets = [token_sets.token_set(rng.integers(0, vocab, size=s), s,
                                     multiset=bool(rng.integers(2)))
                for _ in range(n)]
        st = token_sets.stack_token_sets(sets)
        views.append(token_sets.TokenSet(jnp.asarray(st.ids),
                                         jnp.asarray(st.counts)))
      return tuple(views)

    def random_memory(seed, capacity, inserted, sizes=(5, 7), vocab=10):
      rng = np.random.default_rng(seed)
      memory = memory_lib.init(capacity, sizes)
      views = random_views(rng, inserted, sizes, vocab)
      memory = jax.jit(memory_lib.add_episode)(
          memory, views,
          jnp.asarray(rng.integers(0, 4, inserted), jnp.int32),
          jnp.asarray(rng.integers(-2, 3, inserted), jnp.float32),
          jnp.zeros((inserted,), jnp.float32),
          jnp.ones((inserted,), bool), jnp.int32(0), jnp.int32(0))
      queries = random_views(rng, 8, sizes, vocab)
      return memory, queries

    def unsharded(memory, queries, **kw):
      fn = lambda q: retrieval.top_k_neighbours(memory, q, **kw)
      return jax.jit(jax.vmap(fn))(queries)

    def same(a, b):
      return all(np.array_equal(np.asarray(x), np.asarray(y))
                 for x, y in zip(a, b))
    """)

_MULTI_DEVICE = _SETUP + textwrap.dedent("""\
    assert len(jax.devices()) == 8, jax.devices()
    checks = 0
    # One capacity (one compile per (k, mesh)); full, partly full and
    # wrapped ring buffers, each with its own threshold (traced).
    cases = [random_memory(seed, 64, inserted)
             for seed, inserted in enumerate([64, 23, 100])]
    thresholds = [0.0, 0.2, 0.1]
    meshes = [((8,), ("memory",), None),
              ((2, 4), ("batch", "memory"), "batch")]
    # The "dense" kernel compiles fastest; the default "hash" kernel is
    # checked once at the end (all kernels give the same similarities).
    for k, k_exact in [(1, 0), (6, 3), (100, 0)]:
      kw = dict(k=k, weights=(0.3, 0.7), k_exact=k_exact,
                exact_threshold=0.5, method="dense")
      refs = [unsharded(m, q, threshold=t, **kw)
              for (m, q), t in zip(cases, thresholds)]
      for shape, names, batch_axis in meshes:
        mesh = jax.make_mesh(shape, names)
        fn = sharding.make_sharded_top_k(mesh, batch_axis=batch_axis, **kw)
        for (memory, queries), t, ref in zip(cases, thresholds, refs):
          out = fn(sharding.shard_memory(memory, mesh), queries, t)
          assert same(out, ref), (k, k_exact, shape, out, ref)
          checks += 1
    # The default kernel; the one-shot form; an unplaced memory.
    mesh = jax.make_mesh((8,), ("memory",))
    memory, queries = cases[0]
    out = sharding.sharded_top_k_neighbours(
        memory, queries, mesh=mesh, k=4, weights=(0.3, 0.7))
    assert same(out, unsharded(memory, queries, k=4, weights=(0.3, 0.7)))
    # Capacity not divisible by the memory axis.
    odd, q = random_memory(0, 60, 10)
    try:
      sharding.shard_memory(odd, mesh)
      raise AssertionError("no error for capacity 60 over 8 devices")
    except ValueError as e:
      assert "not divisible" in str(e)
    print("SHARDED_OK", checks)
    """)


class ShardingTest(absltest.TestCase):

  def test_equals_unsharded_on_8_cpu_devices(self):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-4000:])
    # 3 (k, k_exact) x 2 meshes x 3 memories.
    self.assertIn("SHARDED_OK 18", result.stdout)

  def test_one_device_mesh_equals_unsharded(self):
    scope = {}
    exec(_SETUP, scope)  # pylint: disable=exec-used
    memory, queries = scope["random_memory"](3, 16, 12)
    mesh = jax.make_mesh((1,), ("memory",))
    kw = dict(k=6, weights=(0.3, 0.7))
    out = sharding.sharded_top_k_neighbours(memory, queries, mesh=mesh, **kw)
    self.assertTrue(
        scope["same"](out, scope["unsharded"](memory, queries, **kw))
    )

  def test_by_hand(self):
    # Four entries, one view; query {1, 2}. J with {1, 2}: 1.0, with {1}:
    # 0.5, with {1, 2, 3}: 2/3, with {7}: 0 (never a neighbour). Order:
    # rows 0 (1.0), 2 (0.667), 1 (0.5); k = 3.
    sets = [[1, 2], [1], [1, 2, 3], [7]]
    st = token_sets.stack_token_sets(
        [token_sets.token_set(s, 3, multiset=False) for s in sets]
    )
    memory = memory_lib.init(4, (3,))
    memory = memory_lib.add_episode(
        memory,
        (token_sets.TokenSet(jnp.asarray(st.ids), jnp.asarray(st.counts)),),
        jnp.asarray([10, 11, 12, 13], jnp.int32),
        jnp.asarray([1.0, 2.0, 3.0, 4.0]),
        jnp.zeros((4,)),
        jnp.ones((4,), bool),
        jnp.int32(0),
        jnp.int32(0),
    )
    q = token_sets.token_set([1, 2], 3, multiset=False)
    query = (
        token_sets.TokenSet(
            jnp.asarray(q.ids)[None], jnp.asarray(q.counts)[None]
        ),
    )
    mesh = jax.make_mesh((1,), ("memory",))
    out = sharding.sharded_top_k_neighbours(
        memory, query, mesh=mesh, k=4, weights=(1.0,), method="dense"
    )
    np.testing.assert_array_equal(out.indices[0], [0, 2, 1, 0])
    np.testing.assert_array_equal(out.action_ids[0], [10, 12, 11, 0])
    np.testing.assert_array_equal(out.mask[0], [True, True, True, False])
    np.testing.assert_allclose(
        out.similarities[0], [1.0, 2 / 3, 0.5, 0.0], rtol=1e-6
    )
    ref = retrieval.top_k_neighbours(
        memory, jax.tree.map(lambda x: x[0], query), k=4, weights=(1.0,)
    )
    np.testing.assert_array_equal(out.indices[0], ref.indices)

  def test_partition_specs(self):
    memory = memory_lib.init(8, (3, 4))
    specs = sharding.memory_partition_specs(memory, memory_axis="m")
    self.assertEqual(specs.returns, jax.sharding.PartitionSpec("m"))
    self.assertEqual(specs.views[1].ids, jax.sharding.PartitionSpec("m"))
    self.assertEqual(specs.cursor, jax.sharding.PartitionSpec())

  def test_unknown_axis(self):
    mesh = jax.make_mesh((1,), ("memory",))
    with self.assertRaisesRegex(ValueError, "not 'batch'"):
      sharding.make_sharded_top_k(mesh, k=2, weights=(1.0,), batch_axis="batch")


if __name__ == "__main__":
  absltest.main()
