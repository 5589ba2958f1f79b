"""Tests for the generating agents (jitrl_jax.agents.generate).

``static-generate`` writes its command with the LM; ``jitrl-generate``
writes it as an exact draw from pi'(y) ~ pi_theta(y) exp(beta A(s, y)), with
A = Q - V for the neighbours' commands and A_0 = 0 for every other string.

A tiny random Llama over bytes (vocabulary 256 bytes + terminator + pad)
checks the mechanics in seconds: beta = 0 is plain sampling draw for draw,
one compilation serves a run, a command cut by the budget is logged, the
commands scored from the prompt's cache equal the one-pass scorer. The
embedded SmolLM2-135M checks that the written commands' frequencies match
their exact pi' and plays two short TextWorld Express runs.
"""

import collections
import functools
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import episodes
from experiments import persistence
from experiments.configs import scripted
from jitrl_jax import agents as agent_lib
from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import policy
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax.agents import batching
from jitrl_jax.agents import commands
from jitrl_jax.agents import generate
from jitrl_jax.agents import prompts
from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import scoring
from jitrl_jax.models import tilting
from tests import agent_memory
from tests import tiny_llama

STOP, PAD = 256, 257  # the byte LM's terminator and padding
TINY = llama_lib.LlamaConfig(
    vocab_size=260,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    max_position_embeddings=640,
)
TINY_SETTINGS = dict(
    view_sizes=(32, 64),
    memory_capacity=64,
    prompt_buckets=(512,),
    token_buckets=(8,),
    max_command_tokens=8,
    k=4,
)
_ROOM = "You are in the kitchen. There is a fridge and a red apple here."
_OTHER = "You are in the garden. There is a shed to the north."


@functools.lru_cache(maxsize=None)
def tiny_model() -> llama_lib.Llama:
  return tiny_llama.random_llama(TINY, seed=0, scale=0.5)


@functools.lru_cache(maxsize=None)
def byte_lm() -> agent_lib.LanguageModel:
  """A tiny random Llama whose tokens are the bytes of the text."""
  return agent_lib.from_llama(
      tiny_model(),
      encode=lambda text: list(text.encode("utf-8")),
      decode=lambda ids: bytes(i for i in ids if i < 256).decode(
          "utf-8", errors="replace"
      ),
      render_prompt=lambda system, user: f"{system}\n{user}\n> ",
      stop_ids=(STOP,),
      pad_id=PAD,
      name="tiny-bytes",
  )


@functools.lru_cache(maxsize=None)
def tiny_agent(name: str, beta: float = 0.0):
  return agent_lib.make_agent(name, byte_lm(), beta=beta, **TINY_SETTINGS)


def _obs(current=_ROOM, history="path: kitchen", step=0):
  return agent_lib.GameObservation(
      observation=current,
      current=current,
      history=history,
      task="Put the apple in the fridge.",
      valid_actions=["never shown"],
      recent=(),
      step=step,
  )


def _table(agent, carry):
  """The action table as `act` hands it to the decision (width T)."""
  t = generate.command_width(agent.settings, carry.table.lengths)
  return carry.table._replace(tokens=carry.table.tokens[:, :t])


class ApiTest(absltest.TestCase):
  """Errors and host-side parsing: no compilation."""

  def test_generating_agents_are_agent_names(self):
    for name in ("static-generate", "jitrl-generate"):
      self.assertIn(name, agent_lib.AGENT_NAMES)
      self.assertEqual(agent_lib.check_agent_name(name), name)

  def test_scripted_lm_is_a_clear_error(self):
    lm = agent_lib.scripted_language_model()
    for name in agent_lib.GENERATING_AGENT_NAMES:
      with self.assertRaisesRegex(agent_lib.NoGeneratorError, "scripted"):
        agent_lib.make_agent(name, lm)

  def test_runner_refuses_the_scripted_lm_before_any_work(self):
    cfg = scripted.get_config()
    cfg.agents = ("static", "jitrl-generate")
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp, True)
    run_dir = os.path.join(tmp, "run")
    with self.assertRaisesRegex(episodes.ConfigError, "jitrl-generate"):
      episodes.run_experiment(cfg, run_dir)
    self.assertFalse(os.path.exists(run_dir))

  def test_memory_command_advantages(self):
    # Neighbours took 5, 5, 7 with returns 1, 0, 2 (one masked slot):
    # V = 1, Q(5) = 0.5, Q(7) = 2, so A = -0.5 and 1 on the first slot of
    # each distinct command.
    nb = retrieval_lib.Neighbours(
        indices=np.arange(4, dtype=np.int32),
        similarities=np.ones(4, np.float32),
        action_ids=np.array([5, 5, 7, 0], np.int32),
        returns=np.array([1.0, 0.0, 2.0, 0.0], np.float32),
        mask=np.array([True, True, True, False]),
    )
    hyper = config_lib.Hyper(lam=0.5, alpha=1.5)
    out = policy.memory_command_advantages(config_lib.Settings(), hyper, nb)
    np.testing.assert_array_equal(out.mask, [True, False, True, False])
    np.testing.assert_allclose(out.advantages, [-0.5, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(out.counts)[[0, 2]], [2, 1])
    self.assertEqual(float(out.baseline), 0.0)
    self.assertAlmostEqual(float(out.value), 1.0)
    bonus = config_lib.Settings(other_command_advantage="expected_bonus")
    out = policy.memory_command_advantages(bonus, hyper, nb)
    self.assertAlmostEqual(float(out.baseline), 0.5 * 1.5 / 3, places=6)
    empty = nb._replace(mask=np.zeros(4, bool))
    out = policy.memory_command_advantages(bonus, hyper, empty)
    self.assertFalse(np.any(out.mask))
    self.assertEqual(float(out.baseline), 0.0)

  def test_kl_budget_is_refused(self):
    with self.assertRaisesRegex(ValueError, "kl_budget"):
      agent_lib.make_agent("jitrl-generate", byte_lm(), kl_budget=0.1)

  def test_settings_field(self):
    self.assertEqual(config_lib.Settings().max_command_tokens, 12)
    with self.assertRaisesRegex(ValueError, "max_command_tokens"):
      config_lib.Settings(max_command_tokens=1)
    with self.assertRaisesRegex(ValueError, "other_command_advantage"):
      config_lib.Settings(other_command_advantage="one")

  def test_parse_command(self):
    self.assertEqual(
        commands.parse_command("take  apple"), ("take apple", False)
    )
    self.assertEqual(
        commands.parse_command("\n  open fridge \nthen more"),
        ("open fridge", False),
    )
    for text in ("", "   ", "\n\n", "...", "\ufffd\ufffd"):
      self.assertEqual(commands.parse_command(text), ("look", True))

  def test_game_command_drops_what_is_not_a_command(self):
    cases = {
        "1. Pick up the dirty teal dress": "Pick up the dirty teal dress",
        '"open fridge"': "open fridge",
        "- look.": "look",
        "> go north!": "go north",
        "3) open the door": "open the door",
        "\u201cRead the note.\u201d": "Read the note",
        "take lamp": "take lamp",
        "1.": "look",
        "2. ...": "look",
        '"take lamp".': "take lamp",
        # A quote that belongs to the command stays (web actions).
        '1. "Submit" (button)': '"Submit" (button)',
        'click "Ok" (button).': 'click "Ok" (button)',
        '"Ok" and "Cancel"': '"Ok" and "Cancel"',
    }
    for line, command in cases.items():
      self.assertEqual(commands.game_command(line), command, line)

  def test_choice_sends_the_game_command_and_keeps_the_line(self):
    choice = agent_lib.Choice("1. take lamp", False, {}, "take lamp")
    self.assertEqual(choice.game_command, "take lamp")
    self.assertEqual(choice.action, "1. take lamp")
    self.assertEqual(agent_lib.Choice("look", False, {}).game_command, "look")

  def test_line_breaks_end_a_command(self):
    # The byte LM: "\n" is one token, "\n\n" two (so not a terminator).
    self.assertEqual(generate.command_stop_ids(byte_lm()), (STOP, ord("\n")))

  def test_each_command_once_per_terminator(self):
    rng = np.random.default_rng(0)
    b, s, t, v = 2, 3, 5, 7
    stops = (5, 6)
    tokens = rng.integers(0, 5, (b, s, t)).astype(np.int32)
    lengths = np.array([[3, 5, 0], [2, 4, 4]], np.int32)
    for i in range(b):
      for j in range(s):
        if lengths[i, j]:
          tokens[i, j, lengths[i, j] - 1] = stops[0]
    tokens[1, 2, 3] = 1  # cut at the width: no terminator
    token_logp = -rng.random((b, s, t)).astype(np.float32)
    next_logp = np.log(rng.dirichlet(np.ones(v), (b, s, t))).astype(np.float32)
    out_t, out_n, out_lp, out_next = generate.with_terminators(
        tokens, lengths, token_logp, next_logp, stops
    )
    self.assertEqual(out_t.shape, (b, s * 2, t))
    self.assertEqual(out_next.shape, (b, s * 2, t, v))
    for i in range(b):
      for j in range(s):
        n = lengths[i, j]
        for r, stop in enumerate(stops):
          row = j * 2 + r
          self.assertEqual(out_n[i, row], n)
          np.testing.assert_array_equal(out_next[i, row], next_logp[i, j])
          if n == 0 or (i, j) == (1, 2):  # padding, or cut: unchanged
            np.testing.assert_array_equal(out_t[i, row], tokens[i, j])
            continue
          np.testing.assert_array_equal(
              out_t[i, row, : n - 1], tokens[i, j, : n - 1]
          )
          self.assertEqual(out_t[i, row, n - 1], stop)
          np.testing.assert_allclose(
              out_lp[i, row, : n - 1], token_logp[i, j, : n - 1]
          )
          self.assertAlmostEqual(
              float(out_lp[i, row, n - 1]),
              float(next_logp[i, j, n - 1, stop]),
              places=6,
          )

  def test_unusable_text_falls_back_and_is_logged(self):
    lm = byte_lm()
    lm = lm._replace(generator=lm.generator._replace(decode=lambda ids: " "))
    b = 1
    out = generate.GenerateDecision(
        tokens=np.array([[32, STOP, PAD, PAD]], np.int32),
        lengths=np.array([2], np.int32),
        truncated=np.array([False]),
        log_pi_theta=np.array([-3.0], np.float32),
        log_pi=np.array([-3.0], np.float32),
        log_partition=np.zeros((b,), np.float32),
        kl=np.zeros((b,), np.float32),
        command_index=np.array([-1], np.int32),
        command_ids=np.zeros((b, 0), np.int32),
        command_valid=np.zeros((b, 0), bool),
        advantages=np.zeros((b, 0), np.float32),
        command_log_pi_theta=np.zeros((b, 0), np.float32),
        command_log_pi=np.zeros((b, 0), np.float32),
        baseline=np.zeros((b,), np.float32),
        value=np.zeros((b,), np.float32),
        num_neighbours=np.zeros((b,), np.int32),
        weight=np.zeros((b,), np.float32),
        nan_logits=np.array([False]),
    )
    inputs = generate.GenerateInput(
        np.zeros((1, 8), np.int32), np.array([5], np.int32), (), np.zeros(1)
    )
    ((action, from_memory, diag, sent),) = commands.choices(out, inputs, lm, {})
    self.assertEqual(action, "look")
    self.assertEqual(sent, "look")
    self.assertEqual(diag["game_command"], "look")
    self.assertFalse(from_memory)
    self.assertTrue(diag["fallback"])
    self.assertEqual(diag["generated_text"], " ")
    self.assertAlmostEqual(diag["pi_theta"], np.exp(-3.0), places=6)


class TinyLmTest(absltest.TestCase):
  """The mechanics on the byte-level random Llama."""

  def setUp(self):
    super().setUp()
    self.lm = byte_lm()
    self.games = [_obs(), _obs(_OTHER, "path: garden", step=1)]

  def _memory(self, agent):
    return agent_memory.with_memory(
        agent,
        [
            (_ROOM, "path: kitchen", "north", 1.0),
            (_ROOM, "path: kitchen", "Look", -1.0),
            (_OTHER, "path: garden", "open shed", 0.5),
        ],
    )

  def test_beta_zero_equals_static_draw_for_draw(self):
    static = tiny_agent("static-generate")
    tilted = tiny_agent("jitrl-generate", beta=0.0)
    carry = self._memory(tilted)
    inputs = tilted.prepare(self.games)
    table = _table(tilted, carry)
    for seed in range(4):
      key = jax.random.key(seed)
      a = static.decide(self.lm.params, carry.memory, table, inputs, key)
      b = tilted.decide(self.lm.params, carry.memory, table, inputs, key)
      np.testing.assert_array_equal(a.tokens, b.tokens)
      np.testing.assert_array_equal(a.lengths, b.lengths)
      np.testing.assert_allclose(a.log_pi_theta, b.log_pi_theta, rtol=1e-6)
      np.testing.assert_array_equal(b.log_pi, b.log_pi_theta)
      # The tilt did run: the neighbours' commands are in it, untilted.
      self.assertTrue(np.all(np.sum(b.command_valid, axis=-1) >= 1))
      self.assertTrue(np.all(b.num_neighbours >= 1))
      np.testing.assert_array_equal(b.log_partition, 0.0)
    choices = tilted.act(carry, self.games, jax.random.key(0))
    logged = choices[0].diagnostics["memory_commands"]
    self.assertIn("north", [m["command"] for m in logged])
    self.assertIn("Look", [m["command"] for m in logged])  # as written
    north = next(m for m in logged if m["command"] == "north")
    # Q - V: V is the mean return over the neighbours (all three here).
    self.assertEqual(choices[0].diagnostics["num_neighbours"], 3)
    self.assertAlmostEqual(choices[0].diagnostics["value"], 0.5 / 3, 5)
    self.assertAlmostEqual(north["advantage"], 1.0 - 0.5 / 3, places=5)
    self.assertEqual(north["pi"], north["pi_theta"])

  def test_compiles_once_over_several_decisions(self):
    agent = tiny_agent("jitrl-generate", beta=0.0)
    carry = agent.init()
    for step in range(3):
      games = [
          _obs(step=step),
          _obs(f"{_OTHER} Step {step}.", "path: garden", step=step),
      ]
      choices = agent.act(carry, games, jax.random.key(step))
      self.assertLen(choices, 2)
      carry = agent_memory.with_memory(
          agent,
          [(_ROOM, "path: kitchen", c.action, 1.0) for c in choices],
          carry,
      )
    self.assertGreater(len(carry.action_texts), 0)
    self.assertEqual(agent.num_compiles(), 1)

  def test_command_at_the_budget_is_truncated_and_logged(self):
    # The random byte LM rarely writes its terminator: most commands run
    # into the 8-token budget.
    agent = tiny_agent("jitrl-generate", beta=0.0)
    carry = agent.init()
    seen = []
    for seed in range(4):
      for c in agent.act(carry, self.games, jax.random.key(seed)):
        d = c.diagnostics
        self.assertEqual(d["truncated"], d["generated_tokens"] == 8)
        self.assertLessEqual(d["generated_tokens"], 8)
        if d["truncated"]:
          seen.append(c)
          self.assertEqual(
              c.action, commands.parse_command(d["generated_text"])[0]
          )
          self.assertEqual(c.action == "look", d["fallback"])
          self.assertIsNotNone(d["log_pi_theta"])
    self.assertNotEmpty(seen)
    json.dumps([c.diagnostics for c in seen])  # JSON-able

  def test_commands_scored_from_the_cache_match_the_one_pass_scorer(self):
    lm = self.lm
    graphdef, _ = nnx.split(tiny_model())
    inputs = generate.prepare(
        config_lib.Settings(**TINY_SETTINGS), lm, self.games
    )
    cmds = [lm.encode(c) + [STOP] for c in ("north", "open shed", "Look")]
    toks, lens = scoring.pad_candidates(cmds, num_candidates=4, num_tokens=16)
    toks, lens = np.stack([toks] * 2), np.stack([lens] * 2)

    @jax.jit
    def both(params):
      l = inputs.prompt_ids.shape[1]
      first, cache = lm.generator.prefill(
          params, inputs.prompt_ids, inputs.prompt_lengths, l + 16
      )
      got = generate.score_commands(
          lm.generator,
          params,
          first,
          cache,
          inputs.prompt_lengths,
          toks,
          lens,
      )
      want = scoring.candidate_token_logprobs_batch(
          graphdef,
          params,
          inputs.prompt_ids,
          inputs.prompt_lengths,
          toks,
          lens,
          return_log_softmax=True,
      )
      return got, want

    (lp, next_logp), (want_lp, want_logp) = both(lm.params)
    np.testing.assert_allclose(lp, want_lp, rtol=1e-5, atol=5e-5)
    real = np.arange(16) < lens[..., None]
    np.testing.assert_allclose(
        np.where(real[..., None], next_logp, 0.0),
        np.where(real[..., None], want_logp, 0.0),
        rtol=1e-5,
        atol=5e-5,
    )


def _have_smollm():
  try:
    from jitrl_jax.models import loading  # pylint: disable=g-import-not-at-top

    loading.default_gguf_path()
    return True
  except Exception:  # pylint: disable=broad-except
    return False


@absltest.skipUnless(_have_smollm(), "embedded SmolLM2 GGUF unavailable")
class SmolLmTest(absltest.TestCase):
  """The embedded SmolLM2-135M: exact draws, and two short game runs."""

  R = 256  # draws per chunk (one prefill, repeated caches)
  CHUNKS = 8  # 2048 draws in all (about 1 s per 50 draws on 2 CPU cores)
  BETA = 3.0

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lm = agent_lib.load_language_model()

  def test_line_breaks_end_a_command(self):
    stops = generate.command_stop_ids(self.lm)
    self.assertEqual(stops[0], self.lm.generator.stop_ids[0])
    self.assertIn(self.lm.encode("\n")[0], stops)
    self.assertEqual(len(stops), len(set(stops)))

  def test_written_commands_follow_the_exact_tilted_policy(self):
    # Three memory commands the LM writes as one token and its terminator,
    # with returns 1, 1, -1 from the same state: A = 2/3, 2/3, -4/3, A_0 = 0.
    lm = self.lm
    agent = agent_lib.make_agent(
        "jitrl-generate",
        lm,
        beta=self.BETA,
        k=3,
        max_command_tokens=2,
        view_sizes=(32, 64),
        memory_capacity=16,
        prompt_buckets=(64,),
        token_buckets=(4,),
    )
    settings, hyper = agent.settings, agent.hyper
    commands = ("south", "North", "east")
    returns = (1.0, 1.0, -1.0)
    obs = _obs()
    carry = agent_memory.with_memory(
        agent,
        [(obs.current, obs.history, c, g) for c, g in zip(commands, returns)],
    )
    user = "Which way do you go? Answer with one word: north, south or east."
    ids = lm.encode(lm.render_prompt(prompts.SYSTEM_PROMPT, user))
    inputs = generate.GenerateInput(
        prompt_ids=scoring.pad_prompt(ids, length=64, pad_id=lm.pad_id)[0][
            None
        ],
        prompt_lengths=np.array([len(ids)], np.int32),
        views=batching.stacked_views(settings, [obs]),
        steps=np.zeros((1,), np.int32),
    )
    table = _table(agent, carry)
    n = settings.max_command_tokens
    # A command ends with any of R terminators (end of turn, line breaks):
    # the tilt's rows are S x R strings, row j R + r.
    stops = generate.command_stop_ids(lm)
    r = len(stops)

    @jax.jit
    def draws(params, memory, table, inputs, keys):
      l = inputs.prompt_ids.shape[1]
      first, cache = lm.generator.prefill(
          params,
          inputs.prompt_ids,
          inputs.prompt_lengths,
          l + max(n, table.tokens.shape[1]),
      )
      tilt, mc, _ = generate.memory_tilt(
          settings,
          hyper,
          lm,
          params,
          memory,
          table,
          inputs,
          first,
          cache,
          stop_ids=stops,
      )
      one = jax.tree.map(lambda x: x[0], tilt)

      def chunk(key):
        out = generate.sample(
            lm,
            params,
            first,
            cache,
            inputs.prompt_lengths,
            key,
            tilt=tilt,
            max_new_tokens=n,
            num_samples=self.R,
            stop_ids=stops,
        )
        row = jax.vmap(generate.written_command, in_axes=(None, 0, 0))(
            one, out.tokens, out.lengths
        )
        return jnp.where(row >= 0, row // r, -1), out.log_probs

      index, log_probs = jax.lax.map(chunk, keys)
      return one, jax.tree.map(lambda x: x[0], mc), index, log_probs

    keys = jax.random.split(jax.random.key(0), self.CHUNKS)
    tilt, mc, index, log_probs = jax.device_get(
        draws(lm.params, carry.memory, table, inputs, keys)
    )
    index, log_probs = index.reshape(-1), log_probs.reshape(-1)
    slots = {carry.action_texts[int(a)]: j for j, a in enumerate(mc.action_ids)}
    order = [slots[c] for c in commands]
    valid = tilt.valid.reshape(-1, r)
    self.assertTrue(np.all(valid[order]))
    np.testing.assert_allclose(
        mc.advantages[order], [2 / 3, 2 / 3, -4 / 3], atol=1e-5
    )
    # A command's probability sums its R strings.
    per_command = lambda x: np.logaddexp.reduce(
        np.asarray(x).reshape(-1, r), axis=-1
    )
    # pi' from the tilt's W (rest masses, equation (2) of models.tilting)
    # equals the signed closed form with A_0 = 0:
    # pi'(s) = pi(s) e^{beta A_s} / Z, Z = 1 + sum_s pi(s) (e^{beta A_s} - 1).
    # (The commands' pi(s) from the cache equal the one-pass scorer's: see
    # TinyLmTest.)
    exact = np.exp(per_command(tilting.command_log_probs(tilt)))[order]
    z = per_command(tilt.log_prob)[order]
    # The line-break endings carry mass that a single terminator would
    # have counted as "other" strings.
    ends = np.exp(np.asarray(tilt.log_prob).reshape(-1, r)[order])
    print("pi_theta by terminator", ends)
    tilted = np.exp(z) * np.exp(self.BETA * mc.advantages[order])
    want = tilted / (1.0 + np.sum(tilted - np.exp(z)))
    np.testing.assert_allclose(exact, want, rtol=2e-3)
    # The tilt matters: the two good commands gain, the bad one loses.
    self.assertGreater(exact[0], 3 * np.exp(z[0]))
    self.assertLess(exact[2], np.exp(z[2]))
    # Frequencies: each count is Binomial(n, pi'(s)); within 4.5 standard
    # deviations (+2 for rare commands), the other strings too.
    total = index.size
    counts = np.array([np.sum(index == j) for j in order])
    probs = np.append(exact, 1.0 - exact.sum())
    counts = np.append(counts, total - counts.sum())
    bound = 4.5 * np.sqrt(total * probs * (1 - probs)) + 2.0
    print("pi_theta", np.exp(z), "pi'", exact, "counts", counts / total)
    self.assertTrue(
        np.all(np.abs(counts - total * probs) <= bound),
        f"counts {counts} expected {total * probs} bound {bound}",
    )
    # The sampler's own log pi'(y) of a memory command's string is the
    # exact one (y is one of its R strings, so at most pi'(s)).
    for j, p in zip(order, exact):
      got = log_probs[index == j]
      if got.size:
        self.assertTrue(np.all(got <= np.log(p) + 2e-3))
    string_pi = np.exp(np.asarray(tilting.command_log_probs(tilt)))
    self.assertAlmostEqual(
        float(np.sum(string_pi.reshape(-1, r)[order])), float(exact.sum()), 5
    )

  @absltest.skipUnless(shutil.which("java"), "TextWorld Express needs java")
  def test_end_to_end_textworld_express(self):
    cfg = scripted.get_config()
    cfg.name = "test"
    cfg.game = "twx:twc"
    cfg.agents = ("static-generate", "jitrl-generate")
    cfg.episodes, cfg.steps, cfg.batch_size = 2, 3, 1
    cfg.lm.kind = "gguf"
    cfg.agent.beta = 2.0
    cfg.agent.k = 2
    cfg.agent.history_turns = 0
    cfg.agent.max_observation_chars = 200
    cfg.agent.prompt_buckets = (128,)
    cfg.agent.token_buckets = (8,)
    cfg.agent.max_command_tokens = 6
    run_dir = os.path.join(tempfile.mkdtemp(), "run")
    self.addCleanup(shutil.rmtree, os.path.dirname(run_dir), True)
    results = episodes.run_experiment(cfg, run_dir, lm=self.lm)
    self.assertEqual(set(results["agents"]), set(cfg.agents))
    for name in cfg.agents:
      r = json.load(open(os.path.join(run_dir, name, "results.json")))
      self.assertEqual(r["compiles"], 1)
      rows = persistence.read_step_logs(
          os.path.join(run_dir, name, "steps.jsonl")
      )
      self.assertLen(rows, r["decisions"])
      self.assertNotEmpty(rows)
      for row in rows:
        for key in (
            "action",
            "generated_text",
            "truncated",
            "fallback",
            "pi_theta",
            "pi",
            "log_pi_theta",
            "log_pi",
            "log_w_root",
            "memory_commands",
            "num_neighbours",
            "advantage",
        ):
          self.assertIn(key, row)
        self.assertLessEqual(row["generated_tokens"], 6)
        # The command went to the game as written (or the fallback).
        self.assertEqual(
            row["action"], commands.parse_command(row["generated_text"])[0]
        )
      memory, _ = memory_lib.load(os.path.join(run_dir, name, "memory.npz"))
      if name == "jitrl-generate":
        self.assertEqual(int(memory_lib.size(memory)), len(rows))
        second = [x for x in rows if x["episode"] == 1]
        self.assertGreater(second[0]["num_neighbours"], 0)
      else:
        self.assertEqual(int(memory_lib.size(memory)), 0)
        self.assertTrue(all(x["log_w_root"] == 0.0 for x in rows))
      print(
          name, collections.Counter((x["action"], x["truncated"]) for x in rows)
      )


if __name__ == "__main__":
  absltest.main()
