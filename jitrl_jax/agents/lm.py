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
from jitrl_jax.agents import prompts


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
      candidate_tokens [C, T] int32, candidate_lengths [C] int32, *,
      layout=None, prefix=None) -> [C] float32 summed log pi(candidate |
      prompt), -inf where the length is 0. Pure and jittable; the agent
      vmaps it over B games. `layout` None scores on the padded layout;
      a static (N, K) (`packing.packed_layout`) on the packed one, after
      `prefix` (an `encode_prefix` result) when given, in which case
      `prompt_ids` is the prompt after the prefix's tokens.
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
    reply_prefix: the text the generating agents open the reply with, after
      `render_prompt` ("> " for a chat model, the transcript's prompt; ""
      for a base model, whose reply is the prompt's next line).
    encode_prefix: (params, prefix_ids [P] int32) -> the prefix's cache, for
      `score_fn(..., prefix=)`: a prompt head shared by every step, encoded
      once. None where the LM has no packed layout (scripted LM).
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
  reply_prefix: str = prompts.REPLY_PREFIX
  encode_prefix: Callable[[Any, Any], Any] | None = None


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
    reply_prefix: str = prompts.REPLY_PREFIX,
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
    reply_prefix: see `LanguageModel.reply_prefix`.

  Returns:
    The `LanguageModel`, with a `generator`.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import packing  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import sampling  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import scoring  # pylint: disable=g-import-not-at-top

  graphdef, state = nnx.split(model)
  stop_ids = tuple(int(i) for i in stop_ids)

  def score_fn(
      params,
      prompt_ids,
      prompt_length,
      candidate_tokens,
      candidate_lengths,
      *,
      layout=None,
      prefix=None,
  ):
    if layout is None:
      if prefix is not None:
        raise ValueError("a prefix needs the packed layout")
      return scoring.score_candidates_fn(
          graphdef,
          params,
          prompt_ids,
          prompt_length,
          candidate_tokens,
          candidate_lengths,
      )
    total_len, num_targets = layout
    return packing.packed_score_fn(
        graphdef,
        params,
        prompt_ids,
        prompt_length,
        candidate_tokens,
        candidate_lengths,
        total_len=total_len,
        num_targets=num_targets,
        prefix=prefix,
    )

  def encode_prefix(params, prefix_ids):
    return packing.encode_prefix(graphdef, params, prefix_ids)

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
      reply_prefix=reply_prefix,
      encode_prefix=encode_prefix,
  )


# The embedded models `load_language_model` loads by name (`lm.kind`).
EMBEDDED_MODELS = ("smollm2", "gemma3-270m")


def render_plain(system: str, user: str, *, bos: str = "") -> str:
  """A base model's prompt: a plain document whose next line is the reply.

  A pretrained (not instruction-tuned) model has no chat template, so the
  system and user texts are written as paragraphs and the prompt ends with a
  line break: the model continues the document on the next line, and the
  command it writes (or is scored on) ends with the next line break (the
  candidate suffix). The reply starts a line, so its first word is encoded
  as a line's first word is in running text (no leading-space token).

  Args:
    system: the instructions.
    user: the goal, moves, observation and question.
    bos: the tokenizer's begin-of-sequence text ("" for none), written
      first: `LanguageModel.encode` adds no special tokens.

  Returns:
    The prompt text.
  """
  return f"{bos}{system}\n\n{user}\n"


def render_plain_messages(
    messages: Sequence[Mapping[str, str]], *, bos: str = ""
) -> str:
  """Chat messages as a base model's document (`render_plain`'s layout)."""
  body = "\n\n".join(m["content"] for m in messages)
  return f"{bos}{body}\n"


def _load_model(path: str | None, kind: str):
  """(loaded model, path, sha256) for `load_language_model`."""
  from jitrl_jax.models import gemma_gguf  # pylint: disable=g-import-not-at-top
  from jitrl_jax.models import loading  # pylint: disable=g-import-not-at-top

  if kind not in ("auto",) + EMBEDDED_MODELS:
    raise ValueError(
        f"unknown model kind {kind!r}: use 'auto' or one of {EMBEDDED_MODELS}"
    )
  if path is None:
    if kind == "gemma3-270m":
      path = gemma_gguf.default_gemma_path()
      return (
          gemma_gguf.load_gemma_gguf(None),
          path,
          gemma_gguf.GEMMA_GGUF_SHA256,
      )
    path = loading.default_gguf_path()
  if os.path.isdir(path):
    return loading.load_hf_dir(path), path, ""
  if loading.gguf_file_architecture(path) in (
      gemma_gguf.SUPPORTED_GGUF_ARCHITECTURES
  ):
    return gemma_gguf.load_gemma_gguf(path), path, loading.file_sha256(path)
  return loading.load_gguf(path), path, loading.file_sha256(path)


def load_language_model(
    path: str | None = None,
    *,
    kind: str = "auto",
    max_generate_prompt: int = 1024,
) -> LanguageModel:
  """Loads a causal LM from a GGUF file or a Hugging Face directory.

  GGUF files are read by their architecture: Llama-family files (Llama,
  SmolLM2, Qwen2/3) with `models.loading`, Gemma 3 files with
  `models.gemma_gguf`. A model with a chat template (an instruction model)
  is prompted through it; a base model without one (Gemma 3 270M) through
  `render_plain`, its replies ending at a line break.

  Args:
    path: a .gguf file or a Hugging Face checkpoint directory; None for an
      embedded model.
    kind: which embedded model `path=None` means: "smollm2" or "auto" (the
      embedded SmolLM2-135M-Instruct GGUF) or "gemma3-270m" (Gemma 3 270M,
      Q4_K_M GGUF, from the `gemma` extra; assembled once into the
      project's cache folder).
    max_generate_prompt: prompts for `generate_text` are cut to their last
      this-many tokens.

  Returns:
    A `LanguageModel` (`from_llama`) whose `generate_text` answers the
    evaluator and whose `generator` writes commands.

  Raises:
    ModelFileError: a missing, corrupt or unsupported model (named).
    ValueError: an unknown kind.
  """
  from jitrl_jax.models import sampling  # pylint: disable=g-import-not-at-top

  loaded, path, sha = _load_model(path, kind)
  tokenizer = loaded.tokenizer

  def encode(text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))

  def decode(ids: Sequence[int]) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

  chat = getattr(tokenizer, "chat_template", None) is not None
  if chat:

    def render_prompt(system: str, user: str) -> str:
      messages = [
          {"role": "system", "content": system},
          {"role": "user", "content": user},
      ]
      return tokenizer.apply_chat_template(
          messages, tokenize=False, add_generation_prompt=True
      )

    def render_messages(messages) -> str:
      return tokenizer.apply_chat_template(
          messages, tokenize=False, add_generation_prompt=True
      )

    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if end_id is None or end_id == tokenizer.unk_token_id:
      end_id = tokenizer.eos_token_id
    suffix = () if end_id is None else (int(end_id),)
    reply_prefix = prompts.REPLY_PREFIX
  else:
    bos = tokenizer.bos_token or ""

    def render_prompt(system: str, user: str) -> str:
      return render_plain(system, user, bos=bos)

    def render_messages(messages) -> str:
      return render_plain_messages(messages, bos=bos)

    newline = encode("\n")
    if len(newline) != 1:
      raise ValueError(
          f"{path}: a base model's replies end at a line break, but its "
          f"tokenizer writes one as {len(newline)} tokens"
      )
    eos = tokenizer.eos_token_id
    suffix = (int(newline[0]),) + (() if eos is None else (int(eos),))
    reply_prefix = ""
  pad_id = tokenizer.pad_token_id
  pad_id = int(pad_id) if pad_id is not None else (suffix[0] if suffix else 0)
  model = loaded.model

  def generate_text(messages, max_new_tokens: int) -> str:
    ids = encode(render_messages(messages))[-max_generate_prompt:]
    out = sampling.generate(
        model,
        jnp.asarray([ids], jnp.int32),
        jnp.asarray([len(ids)], jnp.int32),
        jax.random.key(0),
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        # A base model's answer may run over several lines: only the end of
        # the text stops it.
        stop_ids=suffix if chat else suffix[1:],
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
      reply_prefix=reply_prefix,
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
      params,
      prompt_ids,
      prompt_length,
      candidate_tokens,
      candidate_lengths,
      *,
      layout=None,
      prefix=None,
  ):
    del prompt_ids, prompt_length, layout, prefix
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
