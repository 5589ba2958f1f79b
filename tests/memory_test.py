"""Tests for jitrl_jax.memory."""

import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import memory as memory_lib
from jitrl_jax import token_sets

PAD = token_sets.PAD
TokenSet = token_sets.TokenSet
_SIZES = (4, 3)


def _views(rng, lead=()):
  """Random full sets of ids in [0, 50): distinct and ascending per row."""
  return tuple(
      TokenSet(
          np.sort(
              np.argsort(rng.random(lead + (50,)), axis=-1)[..., :s], axis=-1
          ).astype(np.int32),
          rng.integers(1, 3, lead + (s,)).astype(np.float32),
      )
      for s in _SIZES
  )


def _assert_memory_equal(a, b):
  chex.assert_trees_all_equal(
      jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b)
  )


class AddTest(chex.TestCase):

  def test_init(self):
    mem = memory_lib.init(5, _SIZES)
    chex.assert_shape([mem.views[0].ids, mem.views[0].counts], (5, 4))
    chex.assert_shape([mem.views[1].ids, mem.views[1].counts], (5, 3))
    chex.assert_shape([mem.returns, mem.valid, mem.inserted_at], (5,))
    self.assertTrue(np.all(np.asarray(mem.views[0].ids) == PAD))
    self.assertEqual(int(memory_lib.size(mem)), 0)
    self.assertTrue(np.all(np.asarray(mem.inserted_at) == -1))
    self.assertEqual(mem.views[0].ids.dtype, jnp.int32)
    self.assertEqual(mem.returns.dtype, jnp.float32)
    self.assertEqual(memory_lib.capacity(mem), 5)

  def test_bad_init(self):
    with self.assertRaises(ValueError):
      memory_lib.init(0, _SIZES)
    with self.assertRaises(ValueError):
      memory_lib.init(3, ())

  @chex.variants(with_jit=True, without_jit=True)
  def test_wraps_around(self):
    rng = np.random.default_rng(0)
    add = self.variant(memory_lib.add)
    mem = memory_lib.init(3, _SIZES)
    entries = [_views(rng) for _ in range(4)]
    for i, v in enumerate(entries):
      mem = add(mem, v, 100 + i, float(i), 0.5 * i, 7, 9)
    # Capacity 3, 4 inserts: entry 3 overwrote slot 0; slots 1, 2 hold
    # entries 1, 2. The cursor is back at 1.
    np.testing.assert_array_equal(mem.action_ids, [103, 101, 102])
    np.testing.assert_array_equal(mem.returns, [3.0, 1.0, 2.0])
    np.testing.assert_array_equal(mem.rewards, [1.5, 0.5, 1.0])
    np.testing.assert_array_equal(mem.inserted_at, [3, 1, 2])
    np.testing.assert_array_equal(mem.views[0].ids[0], entries[3][0].ids)
    np.testing.assert_array_equal(mem.views[1].counts[2], entries[2][1].counts)
    self.assertEqual(int(mem.cursor), 1)
    self.assertEqual(int(mem.num_inserted), 4)
    self.assertEqual(int(memory_lib.size(mem)), 3)
    np.testing.assert_array_equal(mem.task_ids, [7, 7, 7])

  def test_view_shape_checked(self):
    mem = memory_lib.init(3, _SIZES)
    bad = (
        TokenSet(np.zeros(5, np.int32), np.zeros(5, np.float32)),
        TokenSet(np.zeros(3, np.int32), np.zeros(3, np.float32)),
    )
    with self.assertRaisesRegex(ValueError, "view 0"):
      memory_lib.add(mem, bad, 1, 0.0, 0.0, 0, 0)
    with self.assertRaisesRegex(ValueError, "2 views"):
      memory_lib.add(mem, bad[:1], 1, 0.0, 0.0, 0, 0)


_add_episode = jax.jit(memory_lib.add_episode)
_add = jax.jit(memory_lib.add)


class AddEpisodeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    rng = np.random.default_rng(1)
    mem = memory_lib.init(4, _SIZES)
    mem = memory_lib.add(mem, _views(rng), 1, 1.0, 1.0, 0, 0)  # slot 0.
    views = _views(rng, (3,))
    mask = np.array([True, False, True])
    mem = self.variant(memory_lib.add_episode)(
        mem,
        views,
        np.array([10, 11, 12], np.int32),
        np.array([0.5, 0.6, 0.7], np.float32),
        np.zeros(3, np.float32),
        mask,
        2,
        5,
    )
    # Steps 0 and 2 are kept -> slots 1 and 2, inserted_at 1 and 2.
    np.testing.assert_array_equal(mem.action_ids, [1, 10, 12, 0])
    np.testing.assert_allclose(mem.returns, [1.0, 0.5, 0.7, 0.0])
    np.testing.assert_array_equal(mem.inserted_at, [0, 1, 2, -1])
    np.testing.assert_array_equal(mem.valid, [True, True, True, False])
    np.testing.assert_array_equal(mem.episode_ids, [0, 5, 5, -1])
    np.testing.assert_array_equal(mem.views[0].ids[2], views[0].ids[2])
    self.assertEqual(int(mem.cursor), 3)
    self.assertEqual(int(mem.num_inserted), 3)

  @hypothesis.given(
      st.integers(0, 6),  # entries before the episode
      st.lists(st.booleans(), min_size=7, max_size=7),  # mask, T = 7
      st.integers(0, 2**31 - 1),
  )
  @hypothesis.settings(max_examples=40, deadline=None)
  def test_equals_sequential_adds(self, before, mask, seed):
    # Capacity 5 < T = 7: also covers an episode longer than the memory.
    rng = np.random.default_rng(seed)
    mem = memory_lib.init(5, _SIZES)
    for i in range(before):
      mem = _add(mem, _views(rng), i, float(i), 0.0, 0, 0)
    views = _views(rng, (7,))
    actions = rng.integers(0, 99, 7).astype(np.int32)
    rets = rng.normal(size=7).astype(np.float32)
    rews = rng.normal(size=7).astype(np.float32)
    got = _add_episode(mem, views, actions, rets, rews, np.array(mask), 3, 4)
    want = mem
    for t in range(7):
      if mask[t]:
        step = tuple(TokenSet(v.ids[t], v.counts[t]) for v in views)
        want = _add(want, step, actions[t], rets[t], rews[t], 3, 4)
    _assert_memory_equal(got, want)

  def test_vmapped_twin(self):
    # A batch of independent memories, each taking its own episode.
    rng = np.random.default_rng(2)
    batch = 3
    mem = jax.vmap(lambda _: memory_lib.init(4, _SIZES))(jnp.arange(batch))
    views = _views(rng, (batch, 2))
    actions = rng.integers(0, 9, (batch, 2)).astype(np.int32)
    rets = np.ones((batch, 2), np.float32)
    mask = np.array([[True, True], [True, False], [False, False]])
    out = jax.vmap(
        memory_lib.add_episode, in_axes=(0, 0, 0, 0, 0, 0, None, None)
    )(mem, views, actions, rets, rets, mask, 0, 0)
    np.testing.assert_array_equal(out.num_inserted, [2, 1, 0])
    for b in range(batch):
      single = memory_lib.add_episode(
          memory_lib.init(4, _SIZES),
          tuple(TokenSet(v.ids[b], v.counts[b]) for v in views),
          actions[b],
          rets[b],
          rets[b],
          mask[b],
          0,
          0,
      )
      _assert_memory_equal(jax.tree.map(lambda x, b=b: x[b], out), single)

  def test_compiles_once(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(mem, views, actions, rets, mask):
      return memory_lib.add_episode(mem, views, actions, rets, rets, mask, 0, 0)

    rng = np.random.default_rng(3)
    mem = memory_lib.init(6, _SIZES)
    for _ in range(3):
      mem = f(
          mem,
          _views(rng, (4,)),
          np.arange(4, dtype=np.int32),
          np.ones(4, np.float32),
          np.array([True, True, False, True]),
      )
    self.assertEqual(int(mem.num_inserted), 9)
    self.assertEqual(int(mem.cursor), 3)

  def test_shape_checked(self):
    rng = np.random.default_rng(4)
    mem = memory_lib.init(4, _SIZES)
    with self.assertRaisesRegex(ValueError, "returns"):
      memory_lib.add_episode(
          mem,
          _views(rng, (3,)),
          np.zeros(3, np.int32),
          np.zeros(2),
          np.zeros(3),
          np.ones(3, bool),
          0,
          0,
      )


class SaveLoadTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # tempfile, not create_tempdir: absl flags are not parsed under pytest.
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)
    rng = np.random.default_rng(5)
    mem = memory_lib.init(4, _SIZES)
    mem = memory_lib.add_episode(
        mem,
        _views(rng, (6,)),
        np.arange(6, dtype=np.int32),
        np.linspace(-1, 1, 6).astype(np.float32),
        np.ones(6, np.float32),
        np.ones(6, bool),
        1,
        2,
    )
    self.mem = mem  # wrapped: 6 inserts into 4 slots.
    self.path = os.path.join(self.dir, "memory.npz")
    memory_lib.save(mem, self.path, metadata={"game": "zork1", "episode": 3})

  def _resave(self, **changes):
    with np.load(self.path) as data:
      arrays = {k: data[k] for k in data.files}
    for k, v in changes.items():
      if v is None:
        del arrays[k]
      else:
        arrays[k] = v
    bad = os.path.join(self.dir, "bad.npz")
    with open(bad, "wb") as f:
      np.savez(f, **arrays)
    return bad

  def _assert_load_fails(self, path, pattern):
    before = open(path, "rb").read()
    with self.assertRaisesRegex(memory_lib.MemoryFileError, pattern) as cm:
      memory_lib.load(path)
    self.assertIn(path, str(cm.exception))
    self.assertEqual(open(path, "rb").read(), before)  # never modified.

  def test_round_trip(self):
    loaded, meta = memory_lib.load(self.path)
    _assert_memory_equal(loaded, self.mem)
    self.assertEqual(meta, {"game": "zork1", "episode": 3})
    self.assertEqual(loaded.views[0].ids.dtype, jnp.int32)
    # Only the file itself: no temporary file left behind.
    self.assertEqual(os.listdir(self.dir), ["memory.npz"])

  def test_overwrite_is_atomic_on_failure(self):
    before = open(self.path, "rb").read()
    with mock.patch.object(np, "savez", side_effect=OSError("disk full")):
      with self.assertRaisesRegex(OSError, "disk full"):
        memory_lib.save(memory_lib.init(2, _SIZES), self.path)
    self.assertEqual(open(self.path, "rb").read(), before)
    self.assertEqual(os.listdir(self.dir), ["memory.npz"])

  def test_overwrite(self):
    empty = memory_lib.init(2, (1,))
    memory_lib.save(empty, self.path)
    loaded, meta = memory_lib.load(self.path)
    _assert_memory_equal(loaded, empty)
    self.assertEqual(meta, {})

  def test_bad_metadata(self):
    with self.assertRaisesRegex(ValueError, "JSON"):
      memory_lib.save(self.mem, self.path, metadata={"x": object()})

  def test_missing_file(self):
    with self.assertRaisesRegex(FileNotFoundError, "nope.npz"):
      memory_lib.load(os.path.join(self.dir, "nope.npz"))

  def test_truncated(self):
    data = open(self.path, "rb").read()
    for cut in (10, len(data) // 2, len(data) - 30):
      path = os.path.join(self.dir, f"cut{cut}.npz")
      with open(path, "wb") as f:
        f.write(data[:cut])
      self._assert_load_fails(path, "readable|corrupt")

  def test_corrupt_bytes(self):
    data = bytearray(open(self.path, "rb").read())
    # Flip bytes inside the first member's payload: CRC mismatch.
    for i in range(200, 260):
      data[i] ^= 0xFF
    path = os.path.join(self.dir, "flipped.npz")
    with open(path, "wb") as f:
      f.write(bytes(data))
    self._assert_load_fails(path, "readable|corrupt|field|format")

  def test_not_a_zip(self):
    path = os.path.join(self.dir, "text.npz")
    with open(path, "w") as f:
      f.write("hello")
    self._assert_load_fails(path, "readable")

  def test_wrong_version(self):
    bad = self._resave(format_version=np.asarray(2, np.int32))
    self._assert_load_fails(bad, "version 2")

  @parameterized.parameters(
      ("float", np.asarray(1.9)),
      ("float_one", np.asarray(1.0, np.float32)),
      ("string", np.asarray("1")),
      ("bool", np.asarray(True)),
      ("vector", np.asarray([1], np.int32)),
  )
  def test_version_must_be_an_integer(self, _, version):
    # int() would coerce 1.9, 1.0, "1" and True to version 1.
    self._assert_load_fails(
        self._resave(format_version=version), "format version"
    )

  @parameterized.parameters(np.int64, np.uint8, np.int16)
  def test_any_integer_version_dtype_loads(self, dtype):
    loaded, _ = memory_lib.load(
        self._resave(format_version=np.asarray(1, dtype))
    )
    _assert_memory_equal(loaded, self.mem)

  def test_num_views_must_be_an_integer(self):
    self._assert_load_fails(
        self._resave(num_views=np.asarray(2.5)), "num_views"
    )

  def test_other_npz(self):
    path = os.path.join(self.dir, "other.npz")
    np.savez(path, x=np.arange(3))
    self._assert_load_fails(path, "not a jitrl_jax.memory file")

  @parameterized.parameters(
      "returns", "view1_counts", "cursor", "metadata_json"
  )
  def test_missing_field(self, field):
    self._assert_load_fails(self._resave(**{field: None}), f"'{field}'")

  def test_content_that_parses_but_is_wrong(self):
    # Each is a structurally valid file that retrieval would misread.
    with np.load(self.path) as data:
      a = {k: data[k] for k in data.files}
    valid = np.flatnonzero(a["valid"])
    self.assertNotEmpty(valid)
    row = valid[0]
    cases = {
        "non-finite returns": ("returns", lambda x: x.__setitem__(row, np.nan)),
        "counts must be finite and > 0": (
            "view0_counts",
            lambda x: x.__setitem__((row, 0), -1.0),
        ),
        "not strictly ascending": (
            "view0_ids",
            lambda x: x.__setitem__((row, 1), x[row, 0]),
        ),
        "inserted_at outside": (
            "inserted_at",
            lambda x: x.__setitem__(row, int(a["num_inserted"]) + 5),
        ),
    }
    for message, (name, edit) in cases.items():
      with self.subTest(message):
        x = a[name].copy()
        edit(x)
        self._assert_load_fails(self._resave(**{name: x}), message)

  def test_view_sizes_of_another_config_are_refused(self):
    memory_lib.load(self.path, view_sizes=_SIZES)
    with self.assertRaisesRegex(memory_lib.MemoryFileError, "view sizes"):
      memory_lib.load(self.path, view_sizes=(8, 8))

  def test_inconsistent_fields(self):
    self._assert_load_fails(
        self._resave(returns=np.zeros(3, np.float32)), "'returns' has shape"
    )
    self._assert_load_fails(
        self._resave(valid=np.zeros(4, np.float32)), "'valid' has dtype"
    )
    self._assert_load_fails(
        self._resave(cursor=np.asarray(9, np.int32)), "cursor 9"
    )
    self._assert_load_fails(
        self._resave(metadata_json=np.asarray("{oops")), "metadata"
    )


if __name__ == "__main__":
  absltest.main()
