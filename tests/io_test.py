"""Tests for jitrl_jax/io.py: atomic writes and streamed file hashes."""

import hashlib
import json
import os
import shutil
import stat
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from jitrl_jax import io as io_lib


class AtomicWriteTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(prefix="io_test_")
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
    self.path = os.path.join(self.dir, "out.json")

  def _read(self, path=None):
    with open(path or self.path, "rb") as f:
      return f.read()

  def test_text_replaces_whole_file(self):
    io_lib.atomic_write_text(self.path, "a much longer first content\n")
    io_lib.atomic_write_text(self.path, "short\n")
    self.assertEqual(self._read(), b"short\n")
    self.assertEqual(os.listdir(self.dir), ["out.json"])

  def test_bytes_replace_whole_file(self):
    io_lib.atomic_write_bytes(self.path, b"\x00\x01" * 1000)
    io_lib.atomic_write_bytes(self.path, b"\xff")
    self.assertEqual(self._read(), b"\xff")
    self.assertEqual(os.listdir(self.dir), ["out.json"])

  def test_json_format(self):
    obj = {"b": [1, 2], "a": "x"}
    io_lib.atomic_write_json(self.path, obj)
    self.assertEqual(
        self._read().decode(), json.dumps(obj, indent=1, sort_keys=False) + "\n"
    )
    self.assertEqual(json.loads(self._read()), obj)

  def test_permissions_like_plain_open(self):
    plain = os.path.join(self.dir, "plain.txt")
    with open(plain, "w") as f:
      f.write("x")
    io_lib.atomic_write_text(self.path, "x")
    self.assertEqual(
        stat.S_IMODE(os.stat(self.path).st_mode),
        stat.S_IMODE(os.stat(plain).st_mode),
    )

  def test_make_parents(self):
    nested = os.path.join(self.dir, "a", "b", "c.txt")
    with self.assertRaises(FileNotFoundError):
      io_lib.atomic_write_text(nested, "x")
    io_lib.atomic_write_text(nested, "x", make_parents=True)
    self.assertEqual(self._read(nested), b"x")

  def test_unserialisable_json_leaves_old_file_and_no_temp(self):
    io_lib.atomic_write_json(self.path, {"ok": 1})
    before = self._read()
    with self.assertRaises(TypeError):
      io_lib.atomic_write_json(self.path, {"bad": object()})
    self.assertEqual(self._read(), before)
    self.assertEqual(os.listdir(self.dir), ["out.json"])

  def test_failed_replace_leaves_old_file_and_no_temp(self):
    for write in (
        lambda: io_lib.atomic_write_text(self.path, "new"),
        lambda: io_lib.atomic_write_bytes(self.path, b"new"),
        lambda: io_lib.atomic_write_json(self.path, {"new": 1}),
    ):
      io_lib.atomic_write_text(self.path, "old")
      with mock.patch.object(os, "replace", side_effect=OSError("disk full")):
        with self.assertRaisesRegex(OSError, "disk full"):
          write()
      self.assertEqual(self._read(), b"old")
      self.assertEqual(os.listdir(self.dir), ["out.json"])

  def test_failure_while_writing_leaves_no_temp(self):
    io_lib.atomic_write_text(self.path, "old")
    with self.assertRaisesRegex(RuntimeError, "mid-write"):
      with io_lib.atomic_open(self.path, "w") as f:
        f.write("partial")
        raise RuntimeError("mid-write")
    self.assertEqual(self._read(), b"old")
    self.assertEqual(os.listdir(self.dir), ["out.json"])

  def test_keyboard_interrupt_leaves_no_temp(self):
    with self.assertRaises(KeyboardInterrupt):
      with io_lib.atomic_open(self.path, "wb") as f:
        f.write(b"partial")
        raise KeyboardInterrupt
    self.assertEqual(os.listdir(self.dir), [])

  def test_atomic_open_with_numpy_savez(self):
    path = os.path.join(self.dir, "memory.npz")
    with io_lib.atomic_open(path, "wb") as f:
      np.savez(f, x=np.arange(5))
    with np.load(path) as data:
      np.testing.assert_array_equal(data["x"], np.arange(5))
    self.assertEqual(sorted(os.listdir(self.dir)), ["memory.npz"])

  def test_atomic_path(self):
    with io_lib.atomic_path(self.path) as tmp:
      self.assertEqual(os.path.dirname(tmp), self.dir)
      self.assertFalse(os.path.exists(self.path))
      with open(tmp, "w") as f:
        f.write("via path")
    self.assertEqual(self._read(), b"via path")
    self.assertEqual(os.listdir(self.dir), ["out.json"])

  def test_atomic_path_failure_removes_temp(self):
    with self.assertRaisesRegex(ValueError, "boom"):
      with io_lib.atomic_path(self.path) as tmp:
        with open(tmp, "w") as f:
          f.write("half")
        raise ValueError("boom")
    self.assertEqual(os.listdir(self.dir), [])

  def test_atomic_path_without_a_written_file_fails(self):
    with self.assertRaises(FileNotFoundError):
      with io_lib.atomic_path(self.path):
        pass
    self.assertEqual(os.listdir(self.dir), [])

  def test_bad_mode(self):
    with self.assertRaisesRegex(ValueError, "mode"):
      with io_lib.atomic_open(self.path, "a"):
        pass
    self.assertEqual(os.listdir(self.dir), [])


class FileHashTest(absltest.TestCase):

  def test_hashes_equal_hashlib_on_a_large_file(self):
    d = tempfile.mkdtemp(prefix="io_test_")
    self.addCleanup(shutil.rmtree, d, ignore_errors=True)
    path = os.path.join(d, "blob.bin")
    # 2.5 MiB plus a few bytes: two whole chunks and a partial one.
    data = np.random.default_rng(0).bytes(5 * io_lib.CHUNK_BYTES // 2 + 7)
    with open(path, "wb") as f:
      f.write(data)
    self.assertGreater(os.path.getsize(path), io_lib.CHUNK_BYTES)
    self.assertEqual(io_lib.file_sha256(path), hashlib.sha256(data).hexdigest())
    self.assertEqual(io_lib.file_md5(path), hashlib.md5(data).hexdigest())

  def test_empty_file(self):
    d = tempfile.mkdtemp(prefix="io_test_")
    self.addCleanup(shutil.rmtree, d, ignore_errors=True)
    path = os.path.join(d, "empty")
    open(path, "wb").close()
    self.assertEqual(io_lib.file_sha256(path), hashlib.sha256().hexdigest())
    self.assertEqual(io_lib.file_md5(path), hashlib.md5().hexdigest())

  def test_chunks_are_one_mib(self):
    self.assertEqual(io_lib.CHUNK_BYTES, 1 << 20)


if __name__ == "__main__":
  absltest.main()
