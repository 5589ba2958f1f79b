"""File helpers: atomic writes and streamed file hashes (stdlib only).

Atomic writes. A writer puts the new content into a temporary file in the
destination's directory (same file system), flushes and fsyncs it, then
renames it over the destination with `os.replace`, and finally fsyncs the
directory (best effort) so that the rename itself survives a crash. A reader
therefore sees the old file or the whole new one, never a partial write. On
any exception (KeyboardInterrupt included) the temporary file is removed and
the destination is left as it was.

* `atomic_path(path)`: a context manager that yields the temporary path, for
  writers that want a file name;
* `atomic_open(path, mode)`: a context manager that yields an open file
  object, e.g. `with atomic_open(p, "wb") as f: np.savez(f, **arrays)`;
* `atomic_write_bytes`, `atomic_write_text`, `atomic_write_json`: whole
  contents in one call.

Temporary files are named `.<name>.<pid>.<random>.tmp` next to the
destination and are created with `open(..., "x")`, so the new file gets the
usual permissions (0666 minus the umask), like a plain `open(path, "w")`.

Hashes. `file_sha256` and `file_md5` read a file in 1 MiB chunks, so a
multi-GiB model file is hashed in constant memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from typing import IO, Any, Iterator

CHUNK_BYTES = 1 << 20  # 1 MiB.

PathLike = str | os.PathLike


def _temp_path(path: str) -> str:
  directory, name = os.path.split(path)
  token = secrets.token_hex(4)
  return os.path.join(directory, f".{name}.{os.getpid()}.{token}.tmp")


def _remove_quietly(path: str) -> None:
  with contextlib.suppress(FileNotFoundError):
    os.unlink(path)


def _fsync_file(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _fsync_directory(directory: str) -> None:
  """Persists a rename in `directory`; best effort (not on every platform)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def _atomic_path(
    path: PathLike, *, make_parents: bool, fsync: bool
) -> Iterator[str]:
  path = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(path)
  if make_parents:
    os.makedirs(directory, exist_ok=True)
  tmp = _temp_path(path)
  try:
    yield tmp
    if fsync:
      _fsync_file(tmp)
    os.replace(tmp, path)
  except BaseException:
    _remove_quietly(tmp)
    raise
  _fsync_directory(directory)


def atomic_path(
    path: PathLike, *, make_parents: bool = False
) -> contextlib.AbstractContextManager[str]:
  """Context manager: yields a temporary path that replaces `path` on exit.

  The caller writes the whole new content to the yielded path (which does
  not exist yet). On a normal exit the file is fsynced and renamed over
  `path`; on an exception it is removed and `path` is untouched.

    with io.atomic_path("memory.npz") as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, **arrays)

  Args:
    path: the destination.
    make_parents: create the destination's directory if it is missing.

  Returns:
    The context manager.
  """
  return _atomic_path(path, make_parents=make_parents, fsync=True)


@contextlib.contextmanager
def atomic_open(
    path: PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    make_parents: bool = False,
) -> Iterator[IO[Any]]:
  """Context manager: a file object whose content replaces `path` on exit.

  Args:
    path: the destination.
    mode: "wb" (bytes) or "w" (text).
    encoding: text encoding (text mode; default "utf-8").
    make_parents: create the destination's directory if it is missing.

  Yields:
    The open temporary file; it is flushed, fsynced and closed before the
    rename. On an exception nothing of it remains.

  Raises:
    ValueError: for a mode other than "w" or "wb".
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open mode must be 'w' or 'wb', not {mode!r}")
  if mode == "w" and encoding is None:
    encoding = "utf-8"
  with _atomic_path(path, make_parents=make_parents, fsync=False) as tmp:
    with open(tmp, mode.replace("w", "x"), encoding=encoding) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())


def atomic_write_bytes(
    path: PathLike, data: bytes, *, make_parents: bool = False
) -> None:
  """Writes `data` to `path` atomically (old or new content, whole)."""
  with atomic_open(path, "wb", make_parents=make_parents) as f:
    f.write(data)


def atomic_write_text(
    path: PathLike,
    text: str,
    *,
    encoding: str = "utf-8",
    make_parents: bool = False,
) -> None:
  """Writes `text` to `path` atomically (old or new content, whole)."""
  with atomic_open(
      path, "w", encoding=encoding, make_parents=make_parents
  ) as f:
    f.write(text)


def atomic_write_json(
    path: PathLike,
    obj: Any,
    *,
    indent: int | None = 1,
    sort_keys: bool = False,
    make_parents: bool = False,
) -> None:
  """Writes `obj` as JSON plus a final newline to `path`, atomically.

  The object is serialised before any file is created, so an object that is
  not JSON-serialisable raises TypeError and leaves nothing behind.
  """
  text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"
  atomic_write_text(path, text, make_parents=make_parents)


def file_digest(path: PathLike, algorithm: str) -> str:
  """Hex digest of a file's bytes by `hashlib.new(algorithm)`, streamed."""
  digest = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
      digest.update(chunk)
  return digest.hexdigest()


def file_sha256(path: PathLike) -> str:
  """Hex SHA-256 of a file, read in 1 MiB chunks."""
  return file_digest(path, "sha256")


def file_md5(path: PathLike) -> str:
  """Hex MD5 of a file, read in 1 MiB chunks (e.g. Jericho's ROM table)."""
  return file_digest(path, "md5")
