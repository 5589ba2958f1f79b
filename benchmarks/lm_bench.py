"""Language-model benchmark: the Flax NNX Llama against transformers + torch.

  python -m benchmarks.lm_bench [--quick]

Model: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32;
both sides load the same file: ours with ``loading.load_gguf``, torch with
transformers' GGUF loader). Both run float32 on the CPU; torch gets as many
intra-op threads as JAX's CPU client uses (the usable cores), said in the
output. Measured:

* prefill: next-token logits after a 128- and a 512-token prompt (the output
  projection at the last position only: ``logits_to_keep=1`` for torch,
  ``return_hidden`` + ``unembed`` for JAX), tokens per second;
* decode: greedy tokens per second after a 128-token prompt, decode steps
  only (prefill excluded). JAX: the jitted ``lax.while_loop`` of
  ``sampling.decode`` with the KV cache. torch: a loop over
  ``past_key_values`` (the leanest torch decode; ``model.generate`` adds
  its own overhead);
* candidate scoring: C = 32 candidates of 1..8 tokens after a 512-token
  prompt. ``scoring.score_candidates`` (one forward pass, block mask) against
  32 separate jitted forwards of prompt + candidate (each projecting only
  the candidate positions to the vocabulary, the cheapest separate form).

JAX timings exclude compilation (a warm-up call), then the median of repeated
calls ended by ``block_until_ready``. torch runs with as many threads as JAX
uses (the brief's fair setting) and with one thread; ratios are given
against both (on a shared, oversubscribed machine OpenMP threads that
spin-wait can make multi-threaded torch much slower than single-threaded).
JAX and torch alternate within each timing round, so both see the same
background load. ``run(quick)`` returns a markdown
section (benchmarks/run.py collects them).
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import run as bench_runner
from benchmarks import timing
from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import loading
from jitrl_jax.models import sampling
from jitrl_jax.models import scoring

NUM_CANDIDATES = 32
MAX_CANDIDATE_TOKENS = 8
SCORING_PROMPT = 512
DECODE_PROMPT = 128
TARGETS = {"prefill": 1.0, "decode": 0.7, "scoring": 5.0}


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------
# JAX side.


def _prefill_fn(graphdef, state, tokens):
  """Next-token logits after [B, L] tokens: [B, V]."""
  model = nnx.merge(graphdef, state)
  positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
  hidden, _ = model(tokens, positions, return_hidden=True)
  return model.unembed(hidden[:, -1])


def _prefill_cache_fn(graphdef, state, tokens, *, max_len):
  """Prefill into a cache of ``max_len`` slots: (logits [B, V], cache)."""
  model = nnx.merge(graphdef, state)
  b, l = tokens.shape
  positions = jnp.broadcast_to(jnp.arange(l), (b, l))
  cache = llama_lib.init_cache(model.config, b, max_len)
  hidden, cache = model(tokens, positions, cache, return_hidden=True)
  return model.unembed(hidden[:, -1]), cache


def _decode_fn(graphdef, state, first_logits, cache, positions, *, n):
  """``n`` greedy decode steps from a prefilled cache: tokens [B, n]."""
  model = nnx.merge(graphdef, state)

  def tokens_to_logits(tokens, pos, cache):
    logits, cache = model(tokens[:, None], pos[:, None], cache)
    return logits[:, 0], cache

  return sampling.decode(
      tokens_to_logits,
      first_logits,
      cache,
      positions,
      jax.random.key(0),
      max_new_tokens=n,
  ).tokens


def _separate_score_fn(graphdef, state, tokens, length, cand_len):
  """Scores one candidate by a full forward of prompt + candidate [1, L].

  Only the last ``MAX_CANDIDATE_TOKENS`` predicting positions before
  ``length`` are projected to the vocabulary.
  """
  model = nnx.merge(graphdef, state)
  l = tokens.shape[1]
  mask = jnp.arange(l)[None] < length
  hidden, _ = model(
      tokens, jnp.arange(l)[None], attention_mask=mask, return_hidden=True
  )
  t = MAX_CANDIDATE_TOKENS
  pred = length - 1 - t + jnp.arange(t)  # predicts tokens length-t..length-1
  logp = jax.nn.log_softmax(model.unembed(hidden[0, pred]), axis=-1)
  target = tokens[0, jnp.clip(pred + 1, 0, l - 1)]
  token_logp = jnp.take_along_axis(logp, target[:, None], axis=1)[:, 0]
  return jnp.sum(jnp.where(jnp.arange(t) >= t - cand_len, token_logp, 0.0))


# ---------------------------------------------------------------------------
# torch side.


def _load_torch(threads: int, path: str | None = None, **kwargs):
  """transformers' float32 model from the same GGUF, or (None, reason).

  Args:
    threads: torch's intra-op threads.
    path: the GGUF file (None: the embedded SmolLM2).
    **kwargs: passed to ``from_pretrained``.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return None, f"torch not installed ({e})"
  try:
    torch.set_num_threads(threads)
    directory, name = os.path.split(path or loading.default_gguf_path())
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32, **kwargs
    )
    model.eval()
    return (torch, transformers, model), None
  except Exception as e:  # pylint: disable=broad-except
    return None, f"torch model failed to load ({type(e).__name__}: {e})"


def _timed(fn):
  """Wraps ``fn()`` into a function returning its wall seconds."""
  return lambda: timing.seconds(fn)


def _torch_prefill(ref, ids: np.ndarray, threads: int):
  """A contestant: one torch prefill (next-token logits) under ``threads``."""
  torch, _, model = ref
  x = torch.tensor(ids, dtype=torch.long)

  def run():
    torch.set_num_threads(threads)
    with torch.inference_mode():
      start = time.perf_counter()
      model(x, logits_to_keep=1, use_cache=False)
      return time.perf_counter() - start

  return run


def _torch_decode(ref, ids: np.ndarray, n: int, threads: int):
  """A contestant: ``n`` greedy torch decode steps over ``past_key_values``.

  Returns the seconds of the decode steps only (the prefill is excluded).
  """
  torch, _, model = ref
  x = torch.tensor(ids, dtype=torch.long)

  def run():
    torch.set_num_threads(threads)
    with torch.inference_mode():
      out = model(x, use_cache=True, logits_to_keep=1)
      past = out.past_key_values
      token = out.logits[:, -1].argmax(-1, keepdim=True)
      start = time.perf_counter()
      for _ in range(n):
        out = model(token, past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
      return time.perf_counter() - start

  return run


# ---------------------------------------------------------------------------


def _scoring_seconds(lm, graphdef, state, rng, *, reps, separate_n):
  """(one pass, C separate forwards) seconds of scoring C candidates."""
  vocab = lm.config.vocab_size
  prompt = rng.integers(0, vocab, SCORING_PROMPT).astype(np.int32)
  lens = rng.integers(1, MAX_CANDIDATE_TOKENS + 1, NUM_CANDIDATES)
  cands = [rng.integers(0, vocab, n).tolist() for n in lens]
  cand_ids, cand_lens = scoring.pad_candidates(cands)
  one_pass = timing.median_seconds(
      lambda: scoring.score_candidates(
          lm.model, prompt, SCORING_PROMPT, cand_ids, cand_lens
      ).block_until_ready(),
      reps,
  )
  separate = jax.jit(_separate_score_fn)
  full_len = SCORING_PROMPT + MAX_CANDIDATE_TOKENS
  seqs = []
  for cand in cands[:separate_n]:
    seq = np.zeros((1, full_len), np.int32)
    seq[0, :SCORING_PROMPT] = prompt
    seq[0, SCORING_PROMPT : SCORING_PROMPT + len(cand)] = cand
    seqs.append((jnp.asarray(seq), SCORING_PROMPT + len(cand), len(cand)))
  separate(graphdef, state, *seqs[0]).block_until_ready()  # compile
  start = time.perf_counter()
  for seq, length, n in seqs:
    separate(graphdef, state, seq, length, n).block_until_ready()
  separate_time = time.perf_counter() - start
  separate_time *= NUM_CANDIDATES / separate_n
  return one_pass, separate_time


def rate_rows(model, ref, *, threads, reps, decode_n, rng):
  """Prefill and decode tokens/s of a JAX model and its torch twin.

  Args:
    model: the ``Llama``.
    ref: ``_load_torch``'s (torch, transformers, model), or None.
    threads: the torch thread counts measured.
    reps: interleaved timing rounds.
    decode_n: decode steps timed.
    rng: numpy generator of the random token ids.

  Returns:
    [(measure, jax rate, {threads: torch rate}, target kind)].
  """
  graphdef, state = nnx.split(model)
  vocab = model.config.vocab_size
  rows = []
  prefill = jax.jit(_prefill_fn)
  for length in (128, 512):
    ids = rng.integers(0, vocab, (1, length)).astype(np.int32)
    x = jnp.asarray(ids)
    contestants = {
        "jax": _timed(
            lambda x=x: prefill(graphdef, state, x).block_until_ready()
        )
    }
    if ref:
      for t in threads:
        contestants[t] = _torch_prefill(ref, ids, t)
    seconds = timing.interleaved(contestants, reps)
    rates = {k: length / v for k, v in seconds.items()}
    jax_rate = rates.pop("jax")
    rows.append((f"prefill {length} tokens", jax_rate, rates, "prefill"))

  ids = rng.integers(0, vocab, (1, DECODE_PROMPT)).astype(np.int32)
  x = jnp.asarray(ids)
  prefill_cache = jax.jit(_prefill_cache_fn, static_argnames="max_len")
  decode = jax.jit(_decode_fn, static_argnames="n")
  first_logits, cache = prefill_cache(
      graphdef, state, x, max_len=DECODE_PROMPT + decode_n + 1
  )
  positions = jnp.full((1,), DECODE_PROMPT, jnp.int32)
  contestants = {
      "jax": _timed(
          lambda: decode(
              graphdef, state, first_logits, cache, positions, n=decode_n
          ).block_until_ready()
      )
  }
  if ref:
    for t in threads:
      contestants[t] = _torch_decode(ref, ids, decode_n, t)
  seconds = timing.interleaved(contestants, reps)
  rates = {k: decode_n / v for k, v in seconds.items()}
  jax_rate = rates.pop("jax")
  rows.append(
      (
          f"decode after {DECODE_PROMPT} tokens, {decode_n} steps",
          jax_rate,
          rates,
          "decode",
      )
  )
  return rows


def rate_table(rows, *, cores, threads) -> list[str]:
  """Markdown table lines of `rate_rows`' rows (ratios against targets)."""
  lines = [
      "| measure (tokens/s) | JAX | "
      + " | ".join(f"torch {t} thr" for t in threads)
      + f" | JAX / torch {cores} thr | JAX / best torch | target |",
      "|---|---:|" + "---:|" * len(threads) + "---:|---:|---:|",
  ]
  for name, jax_rate, torch_rates, kind in rows:
    cells = [f"{jax_rate:.1f}"]
    if torch_rates:
      cells += [f"{torch_rates[t]:.1f}" for t in threads]
      for ratio in (
          jax_rate / torch_rates[cores],
          jax_rate / max(torch_rates.values()),
      ):
        mark = "✓" if ratio >= TARGETS[kind] else "✗"
        cells.append(f"{ratio:.2f}x {mark}")
    else:
      cells += ["n/a"] * (len(threads) + 2)
    cells.append(f">= {TARGETS[kind]}x")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return lines


def torch_versions(ref, torch_missing: str, cores: int) -> str:
  """The torch side's description for a section's first line."""
  if ref:
    return (
        f"transformers {ref[1].__version__} + torch {ref[0].__version__} "
        f"(`torch.set_num_threads` {cores}, as JAX, and 1)"
    )
  return f"torch: not measured, {torch_missing}"


def load_average() -> str:
  try:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())
  except OSError:
    return "unknown"


def run(quick: bool = False) -> str:
  """Runs the benchmark; returns a markdown section."""
  reps = 3 if quick else 5
  decode_n = 16 if quick else 32
  separate_n = 4 if quick else NUM_CANDIDATES
  cores = _cores()
  threads = sorted({1, cores})
  rng = np.random.default_rng(0)
  load = load_average()

  lm = loading.load_gguf()
  graphdef, state = nnx.split(lm.model)
  ref, torch_missing = _load_torch(cores)
  rows = rate_rows(
      lm.model, ref, threads=threads, reps=reps, decode_n=decode_n, rng=rng
  )

  # Candidate scoring.
  one_pass, separate_time = _scoring_seconds(
      lm, graphdef, state, rng, reps=reps, separate_n=separate_n
  )
  speedup = separate_time / one_pass
  extrapolated = (
      f" (extrapolated from {separate_n})"
      if separate_n < NUM_CANDIDATES
      else ""
  )

  versions = torch_versions(ref, torch_missing, cores)
  lines = [
      "## Language model (SmolLM2-135M, float32, CPU)",
      "",
      f"JAX {jax.__version__} (XLA CPU, {cores} cores) against {versions}; "
      "the same GGUF weights dequantised to float32. Compilation excluded; "
      f"median of {reps} interleaved rounds (JAX and each torch setting "
      "one after another in every round)"
      + (", quick mode" if quick else "")
      + f". Load average at the start: {load} (shared machine).",
      "",
  ]
  lines += rate_table(rows, cores=cores, threads=threads)
  mark = "✓" if speedup >= TARGETS["scoring"] else "✗"
  lines += [
      "",
      f"Candidate scoring, C = {NUM_CANDIDATES} candidates of 1 to "
      f"{MAX_CANDIDATE_TOKENS} tokens after a {SCORING_PROMPT}-token prompt "
      "(JAX):",
      "",
      "| method | seconds | speed-up |",
      "|---|---:|---:|",
      f"| one pass (`score_candidates`, block mask) | {one_pass:.3f} | "
      f"{speedup:.1f}x {mark} (target >= {TARGETS['scoring']}x) |",
      f"| {NUM_CANDIDATES} separate jitted forwards{extrapolated} | "
      f"{separate_time:.3f} | 1.0x |",
      "",
  ]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  bench_runner.module_main(run, __doc__)
