"""Tests for jitrl_jax.models.tilting.

The tilted decoder must sample exactly pi'(y) = pi_theta(y) e^{beta A(y)} / Z
over whole strings. A tiny causal LM given by a random table of next-token
logits for every prefix (V = 6, terminator 5, budget L = 4 tokens) lets us
list every string: 5^0 + 5 + 25 + 125 = 156 strings ending with the
terminator plus 5^4 = 625 strings truncated at the budget, 781 in all. The
probability the decoder gives each one (the product of its per-step tilted
distributions, teacher-forced through ``tilted_logits``) must equal the
enumerated pi' to 1e-6 in float64. Then: KL in closed form, beta = 0 and
equal advantages give the LM's logits bitwise, the jitted ``lax.while_loop``
sampler draws pi' (binomial bounds) and reproduces plain sampling draw for
draw at beta = 0, and the tilting is wired to a tiny Llama through the
one-pass per-token scorer.
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import sampling
from jitrl_jax.models import scoring
from jitrl_jax.models import tilting
from tests import tiny_llama

V = 6  # vocabulary of the table LM
EOS = 5  # its terminator
L = 4  # the generation budget (max_new_tokens)
T = 5  # command slots: one command is longer than the budget
# BASE[d] = number of prefixes shorter than d, so a prefix h has the row
# BASE[len(h)] + sum_j h_j V^j of the table (all prefixes up to T - 1 tokens).
BASE = np.cumsum([0] + [V**d for d in range(T)])

COMMANDS = (
    (1, 2, EOS),  # "a b": shares the prefix "a b" with the next one
    (1, 2, 3, EOS),  # "a b c"
    (1, EOS),  # "a": a prefix of both above
    (2, 0, EOS),
    (EOS,),  # the empty command (terminator only)
    (3, 3, 3, 3, EOS),  # 5 tokens > L: can never be written, ignored
    (1, 2, EOS),  # repeats row 0: ignored
    (1, EOS, 2, EOS),  # a terminator inside: unreachable, ignored
    (),  # a padding row
)
VALID = (True, True, True, True, True, False, False, False, False)
S = len(COMMANDS)


def node(prefix):
  return int(BASE[len(prefix)] + sum(t * V**j for j, t in enumerate(prefix)))


def random_table(seed, scale=1.5):
  """[prefixes, V] float64 next-token logits of a random causal LM."""
  return scale * np.random.default_rng(seed).standard_normal((BASE[T], V))


def log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def packed_commands():
  ids = np.zeros((S, T), np.int32)
  lens = np.zeros((S,), np.int32)
  for i, cmd in enumerate(COMMANDS):
    ids[i, : len(cmd)] = cmd
    lens[i] = len(cmd)
  return ids, lens


def teacher_forced(table, ids, lens):
  """The scoring pass: token_logp [S, T] and next_logits [S, T, V]."""
  token_logp = np.zeros(ids.shape, np.float64)
  next_logits = np.zeros(ids.shape + (V,), np.float64)
  for s in range(ids.shape[0]):
    for k in range(lens[s]):
      next_logits[s, k] = table[node(ids[s, :k])]
      token_logp[s, k] = log_softmax(next_logits[s, k])[ids[s, k]]
  return token_logp, next_logits


def all_strings():
  """Every string of the budgeted LM: up to L tokens, ending with EOS, or
  exactly L tokens without EOS (truncated, an "other" string)."""
  out, frontier = [], [()]
  for depth in range(L):
    nxt = []
    for h in frontier:
      for t in range(V):
        y = h + (t,)
        if t == EOS or depth == L - 1:
          out.append(y)
        else:
          nxt.append(y)
    frontier = nxt
  return out


STRINGS = all_strings()
PREFIXES = sorted({y[:k] for y in STRINGS for k in range(len(y))})


def exact_tilted(table, adv, a0, beta):
  """Enumeration: log pi(y), A(y), log pi'(y) over STRINGS (float64)."""
  memory = {}
  for cmd, ok, a in zip(COMMANDS, VALID, adv):
    if ok:
      memory[cmd] = a
  logpi = np.array(
      [
          sum(log_softmax(table[node(y[:k])])[y[k]] for k in range(len(y)))
          for y in STRINGS
      ]
  )
  a = np.array([memory.get(y, a0) for y in STRINGS])
  logits = logpi + beta * a
  m = logits.max()
  log_z = m + np.log(np.exp(logits - m).sum())
  return logpi, a, logits - log_z


_tilted_steps = jax.jit(
    jax.vmap(
        functools.partial(tilting.tilted_logits, normalise=True),
        in_axes=(None, 0, 0, 0),
    )
)
_make_tilt = jax.jit(
    functools.partial(tilting.make_tilt, stop_ids=(EOS,), max_len=L)
)


_make_tilts = jax.jit(
    jax.vmap(
        functools.partial(tilting.make_tilt, stop_ids=(EOS,), max_len=L),
        in_axes=(None, None, 0, 0, 0, None),
    )
)
_tilted_steps_batched = jax.jit(
    jax.vmap(functools.partial(tilting.tilted_logits, normalise=True))
)


def decoder_logprobs(tilt, table, dtype=np.float64):
  """log of prod_k pi'(y_k | y_<k), teacher-forced through tilted_logits."""
  prefix = np.zeros((len(PREFIXES), L), np.int32)
  for i, h in enumerate(PREFIXES):
    prefix[i, : len(h)] = h
  pos = np.array([len(h) for h in PREFIXES], np.int32)
  logits = np.stack([table[node(h)] for h in PREFIXES]).astype(dtype)
  steps = np.asarray(_tilted_steps(tilt, prefix, pos, logits), np.float64)
  row = {h: i for i, h in enumerate(PREFIXES)}
  return np.array(
      [sum(steps[row[y[:k]], y[k]] for k in range(len(y))) for y in STRINGS]
  )


def build_tilt(table, adv, a0, beta, *, exact=True, dtype=np.float64):
  ids, lens = packed_commands()
  token_logp, next_logits = teacher_forced(table, ids, lens)
  return _make_tilt(
      ids,
      lens,
      token_logp.astype(dtype),
      np.asarray(adv, dtype),
      dtype(a0),
      dtype(beta),
      next_logits=next_logits.astype(dtype) if exact else None,
  )


def advantages(kind, seed=0):
  """(A_s [S], A_0) for the named case."""
  rng = np.random.default_rng(seed + 100)
  adv = rng.standard_normal(S)
  if kind == "very_negative":  # memory far below every other string
    adv = np.full(S, -50.0)
  elif kind == "very_positive":
    adv = np.full(S, 50.0)
  elif kind == "extremes":  # -50, +50 and the baseline mixed
    adv = np.array([-50.0, 50.0, 0.0, -50.0, 50.0, 50.0, -50.0, 50.0, 0.0])
  elif kind == "equal":
    adv = np.full(S, 0.25)
    return adv, 0.25
  return adv, 0.0


CASES = [
    ("random", "random", 1.0),
    ("random_strong", "random", 3.0),
    ("very_negative", "very_negative", 1.0),
    ("very_positive", "very_positive", 1.0),
    ("extremes", "extremes", 1.0),
    ("equal", "equal", 2.0),
    ("beta_zero", "random", 0.0),
]


class TableLMExactnessTest(parameterized.TestCase):

  def test_string_list(self):
    # 156 terminated + 625 truncated strings; 1 + 5 + 25 + 125 prefixes.
    self.assertLen(STRINGS, 781)
    self.assertLen(PREFIXES, 156)

  def test_valid_commands_and_pack(self):
    ids, lens = packed_commands()
    valid = tilting.valid_commands(ids, lens, stop_ids=(EOS,), max_len=L)
    np.testing.assert_array_equal(valid, VALID)
    # Without the budget the 5-token command is valid.
    valid = tilting.valid_commands(ids, lens, stop_ids=(EOS,))
    self.assertTrue(bool(valid[5]))
    ids, lens = tilting.pack_commands([[1, 2], [3, EOS]], stop_id=EOS)
    np.testing.assert_array_equal(lens, [3, 2, 0, 0])  # count bucket 4
    np.testing.assert_array_equal(ids[:2, :3], [[1, 2, EOS], [3, EOS, 0]])
    with self.assertRaisesRegex(ValueError, "before its end"):
      tilting.pack_commands([[1, EOS, 2]], stop_id=EOS)

  @parameterized.named_parameters(
      *[(f"{n}_{e}", k, b, e) for n, k, b in CASES for e in ("exact", "rest")]
  )
  def test_decoder_equals_enumeration(self, kind, beta, exact):
    with jax.enable_x64(True):
      for seed in (0, 1):
        table = random_table(seed)
        adv, a0 = advantages(kind, seed)
        tilt = build_tilt(table, adv, a0, beta, exact=exact == "exact")
        got = decoder_logprobs(tilt, table)
        _, _, want = exact_tilted(table, adv, a0, beta)
        # Probabilities to 1e-6, and log-probabilities to 1e-6 (a relative
        # 1e-6 on every string, including those near e^{-100}).
        np.testing.assert_allclose(np.exp(got), np.exp(want), atol=1e-6)
        np.testing.assert_allclose(got, want, atol=1e-6)
        self.assertAlmostEqual(np.exp(got).sum(), 1.0, delta=1e-9)

  @parameterized.named_parameters(*[(n, k, b) for n, k, b in CASES])
  def test_kl_and_partition_closed_form(self, kind, beta):
    with jax.enable_x64(True):
      table = random_table(3)
      adv, a0 = advantages(kind)
      tilt = build_tilt(table, adv, a0, beta)
      logpi, a, _ = exact_tilted(table, adv, a0, beta)
      logq = decoder_logprobs(tilt, table)
      q = np.exp(logq)
      kl_enum = np.sum(q * (logq - logpi))
      # KL(pi' || pi) = beta E_pi'[A] - log E_pi[e^{beta A}].
      log_z = np.log(np.sum(np.exp(logpi + beta * a)))
      closed = beta * np.sum(q * a) - log_z
      self.assertAlmostEqual(kl_enum, closed, delta=1e-6)
      self.assertAlmostEqual(
          float(tilting.kl_to_base(tilt)), closed, delta=1e-6
      )
      self.assertAlmostEqual(
          float(tilting.log_partition(tilt)), log_z, delta=1e-6
      )
      # pi'(s) of every valid command; -inf for the ignored rows.
      got = np.asarray(tilting.command_log_probs(tilt))
      row = {y: i for i, y in enumerate(STRINGS)}
      for s, (cmd, ok) in enumerate(zip(COMMANDS, VALID)):
        if ok:
          self.assertAlmostEqual(got[s], logq[row[cmd]], delta=1e-6)
        else:
          self.assertTrue(np.isneginf(got[s]))
      if beta == 0 or kind == "equal":
        self.assertEqual(float(tilting.kl_to_base(tilt)), 0.0)

  @parameterized.parameters(
      (np.float32, "random", 0.0),
      (np.float64, "random", 0.0),
      (np.float32, "equal", 3.0),
  )
  def test_no_tilt_is_the_identity_bitwise(self, dtype, kind, beta):
    # beta = 0 or A_s = A_0: every log W - beta A_0 is lse(w) - lse(w) = 0
    # exactly, so the tilted logits are the LM's logits, bit for bit.
    with jax.enable_x64(dtype == np.float64):
      table = random_table(4)
      adv, a0 = advantages(kind)
      tilt = build_tilt(table, adv, a0, beta, dtype=dtype)
      np.testing.assert_array_equal(tilt.log_w, np.zeros_like(tilt.log_w))
      prefix = np.zeros((len(PREFIXES), L), np.int32)
      for i, h in enumerate(PREFIXES):
        prefix[i, : len(h)] = h
      pos = np.array([len(h) for h in PREFIXES], np.int32)
      logits = np.stack([table[node(h)] for h in PREFIXES]).astype(dtype)
      got = jax.vmap(tilting.tilted_logits, in_axes=(None, 0, 0, 0))(
          tilt, prefix, pos, logits
      )
      np.testing.assert_array_equal(got, logits)

  def test_float32_rest_mass_when_memory_takes_almost_all(self):
    # The LM writes "a <eos>" with probability ~1 - 4e-9 and A = -50 there,
    # A_0 = 0: W(()) = r(()) + pi(a) r(a) + pi(a <eos>) e^{-50} ~ 4e-9, where
    # 1 - pi(a <eos>) is below float32 resolution. pi'(a <eos>) =
    # pi(a <eos>) e^{-50} / Z ~ e^{-50} / 4e-9 ~ 5e-14. The exact rest mass
    # (log-sum-exp of the other tokens' logits) gets it in float32; the
    # fallback 1 - sum still gives a positive, finite W.
    table = random_table(5, scale=0.5)
    table[node(())] = [-20.0, 0.0, -20.0, -20.0, -20.0, -20.0]
    table[node((1,))] = [-20.0, -20.0, -20.0, -20.0, -20.0, 0.0]
    adv = np.full(S, -50.0)
    with jax.enable_x64(True):
      _, _, want = exact_tilted(table, adv, 0.0, 1.0)
    want_cmd = want[STRINGS.index((1, EOS))]
    self.assertLess(want_cmd, np.log(1e-13))
    tilt = build_tilt(table, adv, 0.0, 1.0, dtype=np.float32)
    got = decoder_logprobs(tilt, table, np.float32)
    self.assertAlmostEqual(got[STRINGS.index((1, EOS))], want_cmd, delta=1e-3)
    np.testing.assert_allclose(np.exp(got), np.exp(want), atol=1e-5)
    rest = build_tilt(table, adv, 0.0, 1.0, exact=False, dtype=np.float32)
    self.assertTrue(np.all(np.isfinite(rest.log_w)))
    got = decoder_logprobs(rest, table, np.float32)
    self.assertTrue(np.all(np.isfinite(got)))
    self.assertAlmostEqual(np.exp(got).sum(), 1.0, delta=1e-4)


def table_decoder(tables):
  """A ``tokens_to_logits`` for ``sampling.decode`` over per-row tables.

  The cache is (row's table index [B], code [B], depth [B]) with
  code = sum_j h_j V^j, so the next logits are tables[p, BASE[depth] + code].
  """
  tables = jnp.asarray(tables, jnp.float32)
  base = jnp.asarray(BASE, jnp.int32)

  def tokens_to_logits(tokens, positions, cache):
    del positions
    prompt, code, depth = cache
    code = code + tokens * V**depth
    depth = jnp.minimum(depth + 1, T - 1)
    return tables[prompt, base[depth] + code], (prompt, code, depth)

  def first(prompt):
    return tables[prompt, 0], (prompt, jnp.zeros_like(prompt), 0 * prompt)

  return tokens_to_logits, first


@functools.partial(jax.jit, static_argnames=("tilted",))
def run_sampler(tables, prompt, tilts, key, temperature, tilted=True):
  tokens_to_logits, first = table_decoder(tables)
  first_logits, cache = first(prompt)
  return sampling.decode(
      tokens_to_logits,
      first_logits,
      cache,
      jnp.zeros_like(prompt),
      key,
      max_new_tokens=L,
      temperature=temperature,
      logits_fn=tilting.logits_fn if tilted else None,
      stop_ids=(EOS,),
      logits_fn_state=tilts,
  )


class SamplerTest(parameterized.TestCase):
  """The jitted lax.while_loop sampler with the tilting hook, B = 4096."""

  ROWS = 4096  # 2048 per prompt

  def setup(self, beta, kinds=("random", "extremes")):
    tables = np.stack([random_table(10), random_table(11)])
    ids, lens = packed_commands()
    adv, a0, tl, nl = [], [], [], []
    for p, kind in enumerate(kinds):
      a, b = advantages(kind, p)
      adv.append(a)
      a0.append(b)
      x, y = teacher_forced(tables[p], ids, lens)
      tl.append(x)
      nl.append(y)
    tilts = _make_tilts(
        ids,
        lens,
        np.float32(tl),
        np.float32(adv),
        np.float32(a0),
        np.float32(beta),
        next_logits=np.float32(nl),
    )
    prompt = np.arange(self.ROWS, dtype=np.int32) % 2
    rows = jax.tree.map(lambda x: x[prompt], tilts)
    return tables, prompt, rows, adv, a0

  def test_frequencies_match_exact_tilted_policy(self):
    tables, prompt, tilts, adv, a0 = self.setup(beta=1.5)
    out = run_sampler(tables, prompt, tilts, jax.random.key(0), 1.0)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    chex.assert_shape(tokens, (self.ROWS, L))
    for p in (0, 1):
      with jax.enable_x64(True):
        _, _, logq = exact_tilted(tables[p], adv[p], a0[p], 1.5)
      q = np.exp(logq)
      rows = np.flatnonzero(prompt == p)
      n = len(rows)
      drawn = [tuple(tokens[r, : lengths[r]]) for r in rows]
      index = {y: i for i, y in enumerate(STRINGS)}
      self.assertTrue(all(y in index for y in drawn))
      counts = np.bincount([index[y] for y in drawn], minlength=len(STRINGS))
      # Each count is Binomial(n, q): within 5 standard deviations (+2 for
      # the discreteness of rare strings). The "extremes" prompt puts most
      # mass on the +50 commands.
      bound = 5.0 * np.sqrt(n * q * (1 - q)) + 2.0
      excess = np.abs(counts - n * q) - bound
      self.assertLessEqual(excess.max(), 0.0, STRINGS[int(excess.argmax())])

  def test_beta_zero_is_plain_sampling_draw_for_draw(self):
    tables, prompt, tilts, _, _ = self.setup(beta=0.0)
    key = jax.random.key(1)
    tilted = run_sampler(tables, prompt, tilts, key, 1.0)
    plain = run_sampler(tables, prompt, tilts, key, 1.0, tilted=False)
    np.testing.assert_array_equal(tilted.tokens, plain.tokens)
    np.testing.assert_array_equal(tilted.lengths, plain.lengths)
    # And the tilt does change the draws when beta > 0.
    tables, prompt, tilts, _, _ = self.setup(beta=1.0)
    moved = run_sampler(tables, prompt, tilts, key, 1.0)
    self.assertFalse(np.array_equal(moved.tokens, plain.tokens))

  def test_greedy_follows_the_tilted_argmax(self):
    tables, prompt, tilts, _, _ = self.setup(
        beta=1.0, kinds=("random", "very_positive")
    )
    out = run_sampler(tables, prompt, tilts, jax.random.key(2), 0.0)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    for p in (0, 1):
      # The greedy path computed step by step with tilted_logits.
      tilt = jax.tree.map(lambda x, p=p: x[p], tilts)
      h = []
      while len(h) < L and (not h or h[-1] != EOS):
        prefix = np.zeros((L,), np.int32)
        prefix[: len(h)] = h
        lg = tilting.tilted_logits(
            tilt, prefix, len(h), np.float32(tables[p][node(h)])
        )
        h.append(int(np.argmax(lg)))
      for r in np.flatnonzero(prompt == p)[:3]:
        self.assertEqual(tuple(tokens[r, : lengths[r]]), tuple(h))
    # With A_s = +50 for every memory command, greedy writes one of them.
    self.assertIn(tuple(h), [c for c, ok in zip(COMMANDS, VALID) if ok])


LLAMA = tiny_llama.TINY
STOP = 2


@jax.jit
def _llama_tilts(graphdef, state, batch, adv, beta):
  """The scoring pass of B prompts -> B tilts (A_0 = 0, budget 4)."""
  lp, logp = scoring.candidate_token_logprobs_batch(
      graphdef, state, *batch, return_log_softmax=True
  )
  make = jax.vmap(
      functools.partial(tilting.make_tilt, stop_ids=(STOP,), max_len=4),
      in_axes=(0, 0, 0, 0, None, None),
  )
  return make(batch[2], batch[3], lp, adv, 0.0, beta, next_logits=logp)


class LlamaTiltingTest(parameterized.TestCase):
  """The scoring pass of a tiny Llama feeds the tilt; generate consumes it."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = tiny_llama.random_llama(LLAMA, seed=0, scale=0.5)
    cls.graphdef, cls.state = nnx.split(cls.model)
    cls.prompts = [[3, 14, 15, 9, 26], [5, 35, 8, 9, 7, 9, 3]]
    cls.commands = [[7, 8], [7, 8, 9], [7], [12, 4]]
    cls.ids, cls.lens = tilting.pack_commands(cls.commands, stop_id=STOP)
    chex.assert_shape(cls.ids, (4, 4))
    prompts = np.zeros((2, 8), np.int32)
    for b, p in enumerate(cls.prompts):
      prompts[b, : len(p)] = p
    cls.batch = (
        prompts,
        np.array([len(p) for p in cls.prompts], np.int32),
        np.stack([cls.ids] * 2),
        np.stack([cls.lens] * 2),
    )

  def test_per_token_logprobs_sum_to_the_scores(self):
    fn = jax.jit(
        scoring.candidate_token_logprobs_batch,
        static_argnames="return_log_softmax",
    )
    lp, logp = fn(
        self.graphdef, self.state, *self.batch, return_log_softmax=True
    )
    chex.assert_shape(lp, (2, 4, 4))
    chex.assert_shape(logp, (2, 4, 4, LLAMA.vocab_size))
    scores = jax.jit(scoring.score_candidates_batch)(
        self.graphdef, self.state, *self.batch
    )
    np.testing.assert_allclose(lp.sum(-1), scores, rtol=1e-6)
    picked = np.take_along_axis(
        np.asarray(logp), self.batch[2][..., None], axis=-1
    )[..., 0]
    real = np.arange(4) < self.batch[3][..., None]
    np.testing.assert_array_equal(np.where(real, picked, 0.0), lp)
    np.testing.assert_allclose(
        fn(self.graphdef, self.state, *self.batch), lp, rtol=1e-6
    )

  def tilts(self, adv, beta):
    return _llama_tilts(self.graphdef, self.state, self.batch, adv, beta)

  def test_decode_path_matches_the_scoring_pass(self):
    # For every memory command s, the product of the decoder's tilted
    # distributions (the LM's logits from a forward pass of prompt + prefix)
    # equals pi'(s) = pi(s) e^{beta (A_s - A_0)} / (Z / e^{beta A_0}) built
    # from the one scoring pass.
    adv = np.array([[1.0, -2.0, 0.5, 3.0], [-1.0, 2.0, 0.0, -3.0]], np.float32)
    tilts = self.tilts(adv, 1.0)
    rows, seqs, lens, prefixes, pos, targets, owner = [], [], [], [], [], [], []
    for b, prompt in enumerate(self.prompts):
      for s, cmd in enumerate(self.commands):
        y = list(cmd) + [STOP]
        for k in range(len(y)):
          seq = np.zeros((16,), np.int32)
          seq[: len(prompt) + k] = list(prompt) + y[:k]
          prefix = np.zeros((4,), np.int32)
          prefix[:k] = y[:k]
          rows.append(b)
          seqs.append(seq)
          lens.append(len(prompt) + k)
          prefixes.append(prefix)
          pos.append(k)
          targets.append(y[k])
          owner.append((b, s))
    logits = jax.vmap(
        tiny_llama.forward_last_logits, in_axes=(None, None, 0, 0)
    )(self.graphdef, self.state, np.stack(seqs), np.array(lens))
    step_tilts = jax.tree.map(lambda x: x[np.array(rows)], tilts)
    steps = np.asarray(
        _tilted_steps_batched(
            step_tilts, np.stack(prefixes), np.array(pos), logits
        )
    )
    got = np.zeros((2, len(self.commands)))
    for i, (b, s) in enumerate(owner):
      got[b, s] += steps[i, targets[i]]
    want = np.asarray(jax.vmap(tilting.command_log_probs)(tilts))
    np.testing.assert_allclose(got, want, atol=2e-4)

  def test_generate_with_the_tilt(self):
    # A = +50 on a different command per prompt: greedy writes it.
    adv = np.array([[0.0, 50.0, 0.0, 0.0], [0.0, 0.0, 0.0, 50.0]], np.float32)
    tilts = self.tilts(adv, 1.0)
    out = sampling.generate(
        self.model,
        self.batch[0],
        self.batch[1],
        jax.random.key(0),
        max_new_tokens=4,
        logits_fn=tilting.logits_fn,
        logits_fn_state=tilts,
        stop_ids=(STOP,),
    )
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    self.assertEqual(tokens[0, : lengths[0]].tolist(), [7, 8, 9, STOP])
    self.assertEqual(tokens[1, : lengths[1]].tolist(), [12, 4, STOP])


if __name__ == "__main__":
  absltest.main()
