"""The LM adapter: a frozen causal LM as the agents see it.

One seam, `LanguageModel.score_fn` (the summed log-probability of each
candidate string after a prompt, one teacher-forced pass), plus what the host
needs around it: tokenisation, the chat template and greedy generation (for
the reflective evaluator). The generating agents use a second seam,
`LanguageModel.generator` (`Generator`: prefill a prompt into a cache, extend
the cache by tokens, detokenise). `load_language_model` builds both from a
GGUF file or a Hugging Face directory with the project's Flax model
(`jitrl_jax.models`, through `from_llama`); `scripted_language_model` is a
deterministic stand-in for tests (a table of logits per action string) with
no generator.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax.agents import actions as actions_lib


class Generator(NamedTuple):
  """The LM as a writer: what a generating agent needs besides scoring.

  The cache is a pytree whose leaves all have the batch axis first, so that
  a prompt's cache can be repeated (one copy per memory command, or per
  sample) with `jnp.repeat(leaf, n, axis=0)`.

  Attributes:
    prefill: (params, prompt_ids [B, L] int32 right-padded, prompt_lengths
      [B] int32, cache_len: static int) -> (logits [B, V] float32 of the
      first new token, cache). Pure and jittable.
    extend: (params, tokens [B, N] int32, positions [B, N] int32, real
      [B, N] bool, cache) -> (logits [B, N, V] float32, cache): writes the
      real tokens at their positions and returns, at each of them, the
      next-token logits. Pure and jittable.
    decode: token ids -> text, special tokens (the terminator) dropped.
    stop_ids: the ids that end a reply (the end of the assistant turn).
  """

  prefill: Callable[..., tuple[jax.Array, Any]]
  extend: Callable[..., tuple[jax.Array, Any]]
  decode: Callable[[Sequence[int]], str]
  stop_ids: tuple[int, ...]


class LanguageModel(NamedTuple):
  """A frozen causal LM as the agent sees it.

  Attributes:
    name: a label for logs.
    params: pytree passed to `score_fn` (the model's weights).
    score_fn: (params, prompt_ids [L] int32, prompt_length [] int32,
      candidate_tokens [C, T] int32, candidate_lengths [C] int32) -> [C]
      float32 summed log pi(candidate | prompt), -inf where the length is 0.
      Pure and jittable; the agent vmaps it over B games.
    encode: text -> token ids (no special tokens).
    render_prompt: (system, user) -> prompt text, ending where the reply (the
      action text) begins (the chat template's assistant turn).
    candidate_suffix: token ids appended to every candidate (the end of the
      assistant turn), so that a candidate is scored as a whole reply.
    pad_id: id used for padding (never attended to).
    sha256: sha256 of the weights file ("" when there is none).
    generate_text: (chat messages [{"role", "content"}], max_new_tokens) ->
      the reply text, greedy; used by the reflective evaluator. None where
      the LM cannot generate.
    generator: the `Generator` of the generating agents (`static-generate`,
      `jitrl-generate`); None where the LM cannot write (scripted LM).
  """

  name: str
  params: Any
  score_fn: Callable[..., jax.Array]
  encode: Callable[[str], list[int]]
  render_prompt: Callable[[str, str], str]
  candidate_suffix: tuple[int, ...]
  pad_id: int
  sha256: str
  generate_text: Callable[[list[dict[str, str]], int], str] | None
  generator: Generator | None = None


def from_llama(
    model,
    *,
    encode: Callable[[str], list[int]],
    decode: Callable[[Sequence[int]], str],
    render_prompt: Callable[[str, str], str],
    stop_ids: Sequence[int],
    pad_id: int,
    name: str,
    sha256: str = "",
    generate_text: Callable[[list[dict[str, str]], int], str] | None = None,
) -> LanguageModel:
  """Wraps a `models.llama.Llama` and a tokeniser into a `LanguageModel`.

  `score_fn` and the `Generator` run the model functionally (`nnx.split`
  graphdef closed over, state as params).

  Args:
    model: the Llama.
    encode: text -> ids (no special tokens).
    decode: ids -> text (special tokens dropped).
    render_prompt: (system, user) -> prompt text ending where the reply
      begins.
    stop_ids: the reply terminators; the first is appended to every scored
      candidate (`candidate_suffix`).
    pad_id: padding id.
    name: a label.
    sha256: the weights file's digest ("" for none).
    generate_text: the evaluator's greedy chat generation, or None.

  Returns:
    The `LanguageModel`, with a `generator`.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import sampling  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import scoring  # pylint: disable=g-import-not-at-top

  graphdef, state = nnx.split(model)
  stop_ids = tuple(int(i) for i in stop_ids)

  def score_fn(
      params, prompt_ids, prompt_length, candidate_tokens, candidate_lengths
  ):
    return scoring.score_candidates_fn(
        graphdef,
        params,
        prompt_ids,
        prompt_length,
        candidate_tokens,
        candidate_lengths,
    )

  def prefill(params, prompt_ids, prompt_lengths, cache_len):
    return sampling.prefill(
        nnx.merge(graphdef, params),
        prompt_ids,
        prompt_lengths,
        cache_len=cache_len,
    )

  def extend(params, tokens, positions, real, cache):
    return nnx.merge(graphdef, params)(
        tokens.astype(jnp.int32), positions, cache, attention_mask=real
    )

  return LanguageModel(
      name=name,
      params=state,
      score_fn=score_fn,
      encode=encode,
      render_prompt=render_prompt,
      candidate_suffix=stop_ids[:1],
      pad_id=int(pad_id),
      sha256=sha256,
      generate_text=generate_text,
      generator=Generator(prefill, extend, decode, stop_ids),
  )


def load_language_model(
    path: str | None = None, *, max_generate_prompt: int = 1024
) -> LanguageModel:
  """Loads a GGUF (or Hugging Face directory) Llama-family LM.

  Args:
    path: a .gguf file or a Hugging Face checkpoint directory; None for the
      embedded SmolLM2-135M-Instruct GGUF.
    max_generate_prompt: prompts for `generate_text` are cut to their last
      this-many tokens.

  Returns:
    A `LanguageModel` (`from_llama`) whose `generate_text` answers the
    evaluator and whose `generator` writes commands.
  """
  from jitrl_jax.models import loading  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import sampling  # pylint: disable=g-import-not-at-top

  if path is None:
    path = loading.default_gguf_path()
  if os.path.isdir(path):
    loaded = loading.load_hf_dir(path)
    sha = ""
  else:
    loaded = loading.load_gguf(path)
    sha = loading.file_sha256(path)
  tokenizer = loaded.tokenizer

  def encode(text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))

  def decode(ids: Sequence[int]) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  def render_prompt(system: str, user: str) -> str:
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
    ]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )

  end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
  if end_id is None or end_id == tokenizer.unk_token_id:
    end_id = tokenizer.eos_token_id
  suffix = () if end_id is None else (int(end_id),)
  pad_id = tokenizer.pad_token_id
  pad_id = int(pad_id) if pad_id is not None else (suffix[0] if suffix else 0)
  model = loaded.model

  def generate_text(messages, max_new_tokens: int) -> str:
    prompt = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    ids = encode(prompt)[-max_generate_prompt:]
    out = sampling.generate(
        model,
        jnp.asarray([ids], jnp.int32),
        jnp.asarray([len(ids)], jnp.int32),
        jax.random.key(0),
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        stop_ids=suffix,
    )
    n = int(np.asarray(out.lengths)[0])
    return decode(np.asarray(out.tokens)[0, :n].tolist())

  return from_llama(
      model,
      encode=encode,
      decode=decode,
      render_prompt=render_prompt,
      stop_ids=suffix,
      pad_id=pad_id,
      name=os.path.basename(path),
      sha256=sha,
      generate_text=generate_text,
  )


def scripted_language_model(
    preferences: Mapping[str, float] | None = None,
    *,
    default: float = 0.0,
    name: str = "scripted",
) -> LanguageModel:
  """A deterministic stand-in LM: a fixed logit per action string.

  Every action string is one token (its `action_id`); the prompt is ignored.
  z(a) = preferences[a] if a is listed, else `default`. With no preferences
  the policy is uniform over the candidates; with misleading preferences it
  is a prior that JitRL has to overcome. For tests and benchmarks of the
  agent logic without the cost of a real LM.

  Args:
    preferences: action string -> logit.
    default: logit of every other action.
    name: a label.

  Returns:
    A `LanguageModel` (no `generate_text`).
  """
  preferences = dict(preferences or {})
  keys = np.asarray(
      [actions_lib.action_id(a) for a in preferences] or [-2], np.int32
  )
  values = np.asarray(list(preferences.values()) or [default], np.float32)
  params = {"keys": jnp.asarray(keys), "values": jnp.asarray(values)}

  def score_fn(
      params, prompt_ids, prompt_length, candidate_tokens, candidate_lengths
  ):
    del prompt_ids, prompt_length
    first = candidate_tokens[:, 0]  # [C]
    hit = first[:, None] == params["keys"][None, :]  # [C, P]
    z = jnp.where(
        jnp.any(hit, axis=-1),
        jnp.sum(jnp.where(hit, params["values"][None, :], 0.0), -1),
        jnp.float32(default),
    )
    return jnp.where(candidate_lengths > 0, z, -jnp.inf)

  def encode(text: str) -> list[int]:
    # A whole action is one token; a prompt is its words (never scored).
    return [actions_lib.action_id(text)]

  def render_prompt(system: str, user: str) -> str:
    return system + "\n" + user

  return LanguageModel(
      name=name,
      params=params,
      score_fn=score_fn,
      encode=encode,
      render_prompt=render_prompt,
      candidate_suffix=(),
      pad_id=0,
      sha256="",
      generate_text=None,
  )
