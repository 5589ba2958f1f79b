"""The LM adapter: a frozen causal LM as the agents see it.

One seam, `LanguageModel.score_fn` (the summed log-probability of each
candidate string after a prompt, one teacher-forced pass), plus what the host
needs around it: tokenisation, the chat template and greedy generation (for
the reflective evaluator). `load_language_model` builds it from a GGUF file
or a Hugging Face directory with the project's Flax model
(`jitrl_jax.models`); `scripted_language_model` is a deterministic stand-in
for tests (a table of logits per action string).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax.agents import actions as actions_lib


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
    A `LanguageModel` whose `score_fn` runs the model functionally
    (`nnx.split` graphdef closed over, state as params).
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import loading  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import sampling  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import scoring  # pylint: disable=g-import-not-at-top

  if path is None:
    path = loading.default_gguf_path()
  if os.path.isdir(path):
    loaded = loading.load_hf_dir(path)
    sha = ""
  else:
    loaded = loading.load_gguf(path)
    sha = loading.file_sha256(path)
  tokenizer = loaded.tokenizer
  graphdef, state = nnx.split(loaded.model)

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

  def encode(text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))

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
    return tokenizer.decode(
        np.asarray(out.tokens)[0, :n].tolist(), skip_special_tokens=True
    )

  return LanguageModel(
      name=os.path.basename(path),
      params=state,
      score_fn=score_fn,
      encode=encode,
      render_prompt=render_prompt,
      candidate_suffix=suffix,
      pad_id=pad_id,
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
