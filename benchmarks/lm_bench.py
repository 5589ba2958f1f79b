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
  ``sampling.decode`` with the KV cache. torch: the faster of a manual loop
  over ``past_key_values`` and ``model.generate`` (its prefill subtracted);
* candidate scoring: C = 32 candidates of 1..8 tokens after a 512-token
  prompt. ``scoring.score_candidates`` (one forward pass, block mask) against
  32 separate jitted forwards of prompt + candidate (each projecting only
  the candidate positions to the vocabulary, the cheapest separate form).

JAX timings exclude compilation (a warm-up call), then the median of repeated
calls ended by ``block_until_ready``. ``run(quick)`` returns a markdown
section (benchmarks/run.py collects them).
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import loading
from jitrl_jax.models import sampling
from jitrl_jax.models import scoring

NUM_CANDIDATES = 32
MAX_CANDIDATE_TOKENS = 8
SCORING_PROMPT = 512
DECODE_PROMPT = 128
TARGETS = {"prefill": 1.0, "decode": 0.7, "scoring": 5.0}


def _median_time(fn, reps: int) -> float:
  """Median wall seconds of ``fn()`` over ``reps`` calls (after one warm-up)."""
  fn()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


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


def _load_torch(threads: int):
  """transformers' float32 Llama from the same GGUF, or (None, reason)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return None, f"torch not installed ({e})"
  try:
    torch.set_num_threads(threads)
    directory, name = os.path.split(loading.default_gguf_path())
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32
    )
    model.eval()
    return (torch, transformers, model), None
  except Exception as e:  # pylint: disable=broad-except
    return None, f"torch model failed to load ({type(e).__name__}: {e})"


def _torch_prefill_time(ref, ids: np.ndarray, reps: int) -> float:
  torch, _, model = ref
  x = torch.tensor(ids, dtype=torch.long)

  def f():
    with torch.inference_mode():
      model(x, logits_to_keep=1, use_cache=False)

  return _median_time(f, reps)


def _torch_decode_rate(ref, ids: np.ndarray, n: int, reps: int) -> tuple:
  """Decode tokens/s: (manual cache loop, model.generate)."""
  torch, _, model = ref
  x = torch.tensor(ids, dtype=torch.long)

  def manual():
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

  manual()
  manual_rate = n / statistics.median(manual() for _ in range(reps))

  prefill = _torch_prefill_time(ref, ids, reps)

  def generate():
    with torch.inference_mode():
      model.generate(
          x,
          attention_mask=torch.ones_like(x),
          max_new_tokens=n + 1,
          min_new_tokens=n + 1,
          do_sample=False,
          pad_token_id=0,
      )

  generate_rate = n / max(_median_time(generate, reps) - prefill, 1e-9)
  return manual_rate, generate_rate


# ---------------------------------------------------------------------------


def run(quick: bool = False) -> str:
  """Runs the benchmark; returns a markdown section."""
  reps = 3 if quick else 5
  decode_n = 16 if quick else 64
  separate_n = 4 if quick else NUM_CANDIDATES
  cores = _cores()
  rng = np.random.default_rng(0)

  lm = loading.load_gguf()
  graphdef, state = nnx.split(lm.model)
  vocab = lm.config.vocab_size
  ref, torch_missing = _load_torch(cores)

  rows = []  # (measure, jax, torch, ratio, target)
  notes = []

  # Prefill.
  prefill = jax.jit(_prefill_fn)
  for length in (128, 512):
    ids = rng.integers(0, vocab, (1, length)).astype(np.int32)
    x = jnp.asarray(ids)
    jax_rate = length / _median_time(
        lambda x=x: prefill(graphdef, state, x).block_until_ready(), reps
    )
    torch_rate = (
        length / _torch_prefill_time(ref, ids, reps) if ref else float("nan")
    )
    rows.append(
        (f"prefill {length} tokens (tokens/s)", jax_rate, torch_rate, "prefill")
    )

  # Decode.
  ids = rng.integers(0, vocab, (1, DECODE_PROMPT)).astype(np.int32)
  x = jnp.asarray(ids)
  prefill_cache = jax.jit(_prefill_cache_fn, static_argnames="max_len")
  decode = jax.jit(_decode_fn, static_argnames="n")
  first_logits, cache = prefill_cache(
      graphdef, state, x, max_len=DECODE_PROMPT + decode_n + 1
  )
  positions = jnp.full((1,), DECODE_PROMPT, jnp.int32)
  jax_rate = decode_n / _median_time(
      lambda: decode(
          graphdef, state, first_logits, cache, positions, n=decode_n
      ).block_until_ready(),
      reps,
  )
  torch_rate = float("nan")
  if ref:
    manual_rate, generate_rate = _torch_decode_rate(ref, ids, decode_n, reps)
    torch_rate = max(manual_rate, generate_rate)
    notes.append(
        f"torch decode: manual `past_key_values` loop {manual_rate:.1f} "
        f"tokens/s, `model.generate` {generate_rate:.1f} tokens/s (the faster "
        "is compared)."
    )
  rows.append(
      (
          f"decode after {DECODE_PROMPT} tokens, {decode_n} steps (tokens/s)",
          jax_rate,
          torch_rate,
          "decode",
      )
  )

  # Candidate scoring.
  prompt = rng.integers(0, vocab, SCORING_PROMPT).astype(np.int32)
  lens = rng.integers(1, MAX_CANDIDATE_TOKENS + 1, NUM_CANDIDATES)
  cands = [rng.integers(0, vocab, n).tolist() for n in lens]
  cand_ids, cand_lens = scoring.pad_candidates(cands)
  one_pass = _median_time(
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
  speedup = separate_time / one_pass
  extrapolated = (
      f" (extrapolated from {separate_n})"
      if separate_n < NUM_CANDIDATES
      else ""
  )
  torch_separate = ""
  if ref:
    torch_time = _torch_prefill_time(
        ref, np.asarray(seqs[0][0]), 1 if not quick else 2
    )
    torch_separate = (
        f"; torch, 32 separate forwards: {32 * torch_time:.2f} s "
        "(extrapolated from one)"
    )

  lines = [
      "## Language model (SmolLM2-135M, float32, CPU)",
      "",
      f"JAX {jax.__version__} (XLA CPU, {cores} cores) against "
      + (
          f"transformers {ref[1].__version__} + torch {ref[0].__version__} "
          f"(`torch.set_num_threads({cores})`, the same cores)"
          if ref
          else f"torch: not measured, {torch_missing}"
      )
      + "; same GGUF weights, dequantised to float32. Compilation excluded; "
      f"median of {reps} runs" + (" (quick mode)." if quick else "."),
      "",
      "| measure | JAX | torch | JAX / torch | target |",
      "|---|---:|---:|---:|---:|",
  ]
  for name, j, t, kind in rows:
    ratio = j / t if ref else float("nan")
    ok = "" if not ref else (" ✓" if ratio >= TARGETS[kind] else " ✗")
    lines.append(
        f"| {name} | {j:.1f} | "
        + (f"{t:.1f} | {ratio:.2f}x{ok} |" if ref else "n/a | n/a |")
        + f" >= {TARGETS[kind]}x |"
    )
  ok = " ✓" if speedup >= TARGETS["scoring"] else " ✗"
  lines += [
      "",
      f"Candidate scoring, C = {NUM_CANDIDATES} candidates of 1..."
      f"{MAX_CANDIDATE_TOKENS} tokens after a {SCORING_PROMPT}-token prompt:",
      "",
      "| method | seconds | speed-up |",
      "|---|---:|---:|",
      f"| one pass (`score_candidates`, block mask) | {one_pass:.3f} | "
      f"{speedup:.1f}x{ok} (target >= {TARGETS['scoring']}x) |",
      f"| {NUM_CANDIDATES} separate jitted forwards{extrapolated} | "
      f"{separate_time:.3f} | 1.0x |",
      "",
  ]
  if torch_separate:
    notes.append(f"Context{torch_separate}.")
  lines += [f"- {n}" for n in notes]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  print(run(quick=args.quick))


if __name__ == "__main__":
  main()
