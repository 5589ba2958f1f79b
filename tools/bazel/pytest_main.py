"""Runs one pytest-style test file as a Bazel py_test.

gen_build.py uses this as `main` for a tests/*_test.py file that does not end
in `absltest.main()`; the file's runfiles path is the only argument.
"""

import sys

import pytest

if __name__ == "__main__":
  sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
