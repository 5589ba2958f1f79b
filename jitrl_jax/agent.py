"""Text-game agent: where the frozen LM and the JitRL policy meet.

One decision (SPEC section 8, ARCHITECTURE "the path of one decision"):

  host:   game texts -> prompt (chat template, ends where the action begins),
          state views -> token sets, candidates (valid actions), all padded to
          bucketed shapes;
  device: ONE jitted call, vmapped over a batch of B games:
            retrieve N(s) from memory,
            add the neighbours' actions with positive mean return (SPEC 5),
            z = log pi_theta(candidate string | prompt)   (one LM pass),
            A from the neighbours (paper or reference rule),
            z' = z + beta A, sample (or the reference's argmax);
  host:   the chosen string goes to the game.

At the end of an episode `observe` turns each game's rewards into discounted
returns and writes every step into memory (nothing of an episode is
retrievable before it ends).

Four agents share the LM, the prompt and the candidate set:

* ``static``: the LM's own policy, softmax(z) over the candidates; no memory.
* ``jitrl``: the paper rule (SPEC 5, 7).
* ``jitrl-reference``: the authors' code rule (SPEC 9): threshold schedule,
  adaptive exploration, argmax(p + w A_hat) with p = softmax(z).
* ``memory-prompt``: retrieved experiences are written into the prompt (a
  second device call, retrieval first); the logits are not changed.

Shapes are padded to buckets (prompt length L, candidate count C, candidate
token length T), so one compile serves a whole run. The LM is seen through
one seam, `LanguageModel.score_fn`; `scripted_language_model` is a
deterministic stand-in for tests (a table of logits per action string).

Dimension letters: B games, L prompt tokens, C candidates (environment
slots), K neighbours, X memory-candidate slots (X <= K), T candidate tokens,
S set size, M memory capacity, A action-table rows.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import advantage as advantage_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import token_sets

TokenSet = token_sets.TokenSet

AGENT_NAMES = ("static", "jitrl", "jitrl-reference", "memory-prompt")

SYSTEM_PROMPT = (
    "You are playing a text adventure game. Read what the game says and "
    "reply with exactly one command that makes progress toward the goal."
)


class UnknownAgentError(ValueError):
  """The agent name is not one of `AGENT_NAMES`."""


def check_agent_name(name: str) -> str:
  """Returns `name` if it is a known agent, else raises UnknownAgentError."""
  if name not in AGENT_NAMES:
    raise UnknownAgentError(
        f"unknown agent {name!r}; valid agents are: {', '.join(AGENT_NAMES)}"
    )
  return name


def action_id(action: str) -> int:
  """Stable int32 id of an action string (case and spacing ignored)."""
  return token_sets.stable_hash(normalise_action(action))


def normalise_action(action: str) -> str:
  return " ".join(action.lower().split())


# ---------------------------------------------------------------------------
# The LM seam.


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


def file_sha256(path: str) -> str:
  """Hex sha256 of a file (streamed)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


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
    sha = file_sha256(path)
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
  keys = np.asarray([action_id(a) for a in preferences] or [-2], np.int32)
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
    return [action_id(text)]

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


# ---------------------------------------------------------------------------
# Host-side inputs.


class GameObservation(NamedTuple):
  """What the agent reads from one game before a decision (host side)."""

  observation: str  # the latest game text
  current: str  # current view text (look + observation)
  history: str  # history view text (inventory, path, scoring actions)
  task: str  # goal text or ""
  valid_actions: Sequence[str]  # the environment's candidates
  recent: Sequence[tuple[str, str]]  # last (action, observation) pairs
  step: int  # step within the episode


class DecisionInput(NamedTuple):
  """Padded device inputs of one batched decision."""

  prompt_ids: Any  # [B, L] int32
  prompt_lengths: Any  # [B] int32
  candidate_tokens: Any  # [B, C, T] int32
  candidate_lengths: Any  # [B, C] int32 (0 = padding slot)
  candidate_ids: Any  # [B, C] int32 action ids
  candidate_mask: Any  # [B, C] bool
  views: tuple[TokenSet, ...]  # each ids [B, S_v], counts [B, S_v]
  steps: Any  # [B] int32 step within the episode


class DecisionOutput(NamedTuple):
  """Result of one batched decision; candidate axis is C + X."""

  index: jax.Array  # [B] int32 chosen slot in [0, C + X)
  action_ids: jax.Array  # [B] int32 id of the chosen action
  lm_argmax: jax.Array  # [B] int32 argmax of z
  logits: jax.Array  # [B, C + X] z (LM log-probabilities), -inf masked
  modulated: jax.Array  # [B, C + X] z' = z + beta A (or the reference score)
  pi_theta: jax.Array  # [B, C + X] softmax(z / temperature)
  pi: jax.Array  # [B, C + X] the distribution the choice was drawn from
  advantages: jax.Array  # [B, C + X] A
  q_values: jax.Array  # [B, C + X] Q
  counts: jax.Array  # [B, C + X] n(s, a)
  value: jax.Array  # [B] V(s)
  num_neighbours: jax.Array  # [B] |N(s)|
  beta: jax.Array  # [B] the weight on A actually used
  candidate_ids: jax.Array  # [B, C + X] ids of all slots
  candidate_mask: jax.Array  # [B, C + X] bool


class ActionTable(NamedTuple):
  """Device copy of the tokens of every action stored in memory."""

  action_ids: Any  # [A] int32, -1 for an empty row
  tokens: Any  # [A, T_max] int32
  lengths: Any  # [A] int32


class AgentState(NamedTuple):
  """Everything an agent carries from episode to episode."""

  memory: memory_lib.MemoryState
  table: ActionTable
  action_texts: Mapping[int, str]  # host: action id -> string
  episodes_done: int


class Trajectory(NamedTuple):
  """One finished game, as `observe` stores it (host side)."""

  views: Sequence[tuple[TokenSet, ...]]  # [T] per-step views
  actions: Sequence[str]  # [T]
  rewards: Sequence[float]  # [T] the rewards that make the returns
  task_id: int
  episode_id: int


class Choice(NamedTuple):
  """The host-side reading of one game's decision."""

  action: str
  from_memory: bool  # a memory action, not an environment candidate
  diagnostics: dict[str, Any]  # per-step log entries (JSON-able)


class TextGameAgent(NamedTuple):
  """A text-game agent as a bundle of functions (see `make_agent`)."""

  name: str
  init: Callable[[], AgentState]
  act: Callable[..., list[Choice]]
  observe: Callable[[AgentState, Sequence[Trajectory]], AgentState]
  prepare: Callable[..., DecisionInput]
  decide: Callable[..., DecisionOutput]  # the jitted device call
  retrieve: Callable[..., retrieval_lib.Neighbours]  # jitted, batched
  state_views: Callable[[str, str, str], tuple[TokenSet, ...]]
  restore: Callable[
      [memory_lib.MemoryState, Mapping[int, str], int], AgentState
  ]
  num_compiles: Callable[[], int]


def _bucket(n: int, buckets: Sequence[int], what: str) -> int:
  for b in sorted(buckets):
    if n <= b:
      return b
  return max(buckets)


def _pad_rows(rows: Sequence[Sequence[int]], width: int, pad: int):
  out = np.full((len(rows), width), pad, np.int32)
  for i, r in enumerate(rows):
    r = list(r)[:width]
    out[i, : len(r)] = r
  return out


def format_experiences(
    texts: Mapping[int, str], action_ids, returns, mask, *, max_lines: int = 5
) -> str:
  """Memory-prompt text: per distinct neighbour action, mean return and count.

  Args:
    texts: action id -> string.
    action_ids: [K] neighbour action ids.
    returns: [K] neighbour returns.
    mask: [K] bool.
    max_lines: most lines written (best mean return first).

  Returns:
    Lines such as '- "take coin": average return 1.00 over 3 tries', or "".
  """
  stats: dict[int, list[float]] = {}
  for a, g, m in zip(
      np.asarray(action_ids), np.asarray(returns), np.asarray(mask)
  ):
    if m:
      stats.setdefault(int(a), []).append(float(g))
  ranked = sorted(stats.items(), key=lambda kv: -np.mean(kv[1]))[:max_lines]
  lines = []
  for a, gs in ranked:
    text = texts.get(a)
    if text is None:
      continue
    lines.append(
        f'- "{text}": average return {np.mean(gs):.2f} over '
        f"{len(gs)} tr{'y' if len(gs) == 1 else 'ies'}"
    )
  return "\n".join(lines)


def build_user_message(
    obs: GameObservation,
    *,
    history_turns: int,
    list_actions: bool,
    experiences: str = "",
    max_observation_chars: int = 1500,
) -> str:
  """The user turn of the prompt: goal, recent moves, memory, now, commands."""
  parts = []
  if obs.task:
    parts.append("Goal: " + " ".join(obs.task.split()))
  recent = list(obs.recent)[-history_turns:] if history_turns > 0 else []
  if recent:
    lines = ["Recent moves:"]
    for action, text in recent:
      text = " ".join(text.split())
      if len(text) > 200:
        text = text[:200] + "..."
      lines.append(f"> {action}\n{text}")
    parts.append("\n".join(lines))
  if experiences:
    parts.append(
        "What happened in similar situations in earlier games:\n" + experiences
    )
  observation = " ".join(obs.observation.split())[:max_observation_chars]
  parts.append("Now: " + observation)
  if list_actions:
    parts.append("Possible commands: " + ", ".join(obs.valid_actions))
  parts.append("What is your next command?")
  return "\n\n".join(parts)


def make_agent(
    name: str,
    lm: LanguageModel,
    *,
    # Views (SPEC 2, 3).
    view_sizes: tuple[int, int] = (128, 256),
    view_ngrams: tuple[int, int] = (1, 4),
    view_weights: tuple[float, float] = (0.3, 0.7),
    multiset: bool = True,
    reference_filter: bool = False,
    # Memory and retrieval (SPEC 4).
    memory_capacity: int = 16384,
    k: int = 10,
    threshold: float = 0.0,
    reference_tau0: float = 0.95,
    k_exact: int = 0,
    # Advantages and update (SPEC 5, 7, 9).
    beta: float = 1.0,
    lam: float = 0.5,
    alpha: float = 1.0,
    stochastic_bonus: bool = True,
    gamma: float = 0.5,
    temperature: float = 1.0,
    greedy: bool = False,
    memory_candidates: bool = True,
    memory_candidate_slots: int = 4,
    # Prompt and shapes.
    history_turns: int = 3,
    list_actions: bool = True,
    experience_lines: int = 5,
    max_observation_chars: int = 1500,
    prompt_buckets: Sequence[int] = (256, 512, 1024),
    candidate_buckets: Sequence[int] = (32, 64),
    token_buckets: Sequence[int] = (8, 16),
    action_table_size: int = 4096,
) -> TextGameAgent:
  """Builds one of the `AGENT_NAMES` agents around a frozen LM.

  Args:
    name: "static", "jitrl", "jitrl-reference" or "memory-prompt".
    lm: the `LanguageModel`.
    view_sizes: set size S of the (history, current) views.
    view_ngrams: word n-gram order of the (history, current) views.
    view_weights: similarity weights of the views (SPEC 3: 0.3, 0.7).
    multiset: multiset (True) or set Jaccard.
    reference_filter: drop words with non-alphanumeric characters.
    memory_capacity: M, the ring buffer's size.
    k: neighbours retrieved.
    threshold: similarity threshold tau (paper rule; memory-prompt).
    reference_tau0: tau_0 of the reference rule's schedule.
    k_exact: extra slots of the reference's exact tier (0: none).
    beta: strength of the update z' = z + beta A (paper rule).
    lam: probability of the optimism bonus.
    alpha: bonus numerator.
    stochastic_bonus: draw the bonus (paper) or use its expectation.
    gamma: discount of the returns.
    temperature: z is divided by it before the softmax (all agents).
    greedy: take the argmax instead of sampling (paper rule and static).
    memory_candidates: add neighbours' actions with positive mean return.
    memory_candidate_slots: at most this many are added (best mean return
      first); each slot costs T tokens of the LM pass.
    history_turns: recent (action, observation) pairs in the prompt.
    list_actions: write the candidate commands into the prompt.
    experience_lines: lines of memory written by the memory-prompt agent.
    max_observation_chars: the latest observation is cut to this length.
    prompt_buckets: allowed padded prompt lengths L.
    candidate_buckets: allowed candidate counts C.
    token_buckets: allowed candidate token lengths T.
    action_table_size: rows A of the device action table.

  Returns:
    A `TextGameAgent`.

  Raises:
    UnknownAgentError: for an unknown name.
  """
  check_agent_name(name)
  view_sizes = tuple(int(s) for s in view_sizes)
  weights = tuple(float(w) for w in view_weights)
  t_max = max(token_buckets)
  uses_memory = name != "static"
  reference = name == "jitrl-reference"
  neighbour_slots = k + (k_exact if reference else 0)
  slots = min(int(memory_candidate_slots), neighbour_slots)
  extra = slots if (uses_memory and memory_candidates) else 0
  traces = [0]
  rule = policy_lib.jitrl(
      k=k,
      beta=beta,
      lam=lam,
      alpha=alpha,
      view_weights=weights,
      threshold=None if reference else threshold,
      rule="reference" if reference else "paper",
      greedy=greedy,
      stochastic_bonus=stochastic_bonus,
      gamma=gamma,
      k_exact=k_exact if reference else 0,
      tau0=reference_tau0,
  )

  def state_views(current: str, history: str, task: str = ""):
    del task  # The task is constant within a game: not a state feature.
    texts = (history, current)
    return tuple(
        token_sets.text_token_set(
            t, n=n, size=s, multiset=multiset, reference_filter=reference_filter
        )
        for t, n, s in zip(texts, view_ngrams, view_sizes)
    )

  def init() -> AgentState:
    return AgentState(
        memory=memory_lib.init(memory_capacity, view_sizes),
        table=ActionTable(
            action_ids=jnp.full((action_table_size,), -1, jnp.int32),
            tokens=jnp.zeros((action_table_size, t_max), jnp.int32),
            lengths=jnp.zeros((action_table_size,), jnp.int32),
        ),
        action_texts={},
        episodes_done=0,
    )

  def _table_from_texts(texts: Mapping[int, str]) -> ActionTable:
    ids = np.full((action_table_size,), -1, np.int32)
    toks = np.zeros((action_table_size, t_max), np.int32)
    lens = np.zeros((action_table_size,), np.int32)
    # Most recent actions win when the table is full.
    items = list(texts.items())[-action_table_size:]
    for row, (aid, text) in enumerate(items):
      t = (list(lm.encode(text)) + list(lm.candidate_suffix))[:t_max]
      ids[row], lens[row] = aid, len(t)
      toks[row, : len(t)] = t
    return ActionTable(jnp.asarray(ids), jnp.asarray(toks), jnp.asarray(lens))

  def restore(memory, action_texts, episodes_done) -> AgentState:
    texts = {int(a): str(t) for a, t in action_texts.items()}
    return AgentState(
        memory=memory,
        table=_table_from_texts(texts),
        action_texts=texts,
        episodes_done=int(episodes_done),
    )

  def _threshold(step):
    if reference:
      return retrieval_lib.reference_threshold(step, tau0=reference_tau0)
    return jnp.float32(threshold)

  def _retrieve_one(memory, views, step):
    return retrieval_lib.top_k_neighbours(
        memory,
        views,
        k=k,
        weights=weights,
        threshold=_threshold(step),
        k_exact=k_exact if reference else 0,
    )

  def _decide_one(params, memory, table, inp, key, episodes_done):
    """One game: [C] env slots + [X] memory slots -> choice."""
    c = inp.candidate_ids.shape[0]
    t = inp.candidate_tokens.shape[-1]
    mask = inp.candidate_mask
    ids = inp.candidate_ids
    toks = inp.candidate_tokens
    lens = jnp.where(mask, inp.candidate_lengths, 0)
    if uses_memory:
      nb = _retrieve_one(memory, inp.views, inp.steps)
    if extra:
      mc = advantage_lib.memory_action_candidates(nb, ids, mask)
      # Keep the `extra` best distinct actions (mean return, descending).
      priority = jnp.where(mc.mask, mc.mean_returns, -jnp.inf)
      order = jnp.argsort(-priority, stable=True)[:extra]
      extra_ids = mc.action_ids[order]  # [X]
      row_hit = extra_ids[:, None] == table.action_ids[None, :]  # [X, A]
      found = jnp.any(row_hit, axis=-1)
      row = jnp.argmax(row_hit, axis=-1)
      extra_mask = mc.mask[order] & found
      extra_toks = table.tokens[row, :t]
      extra_lens = jnp.where(extra_mask, jnp.minimum(table.lengths[row], t), 0)
      ids = jnp.concatenate([ids, extra_ids])
      mask = jnp.concatenate([mask, extra_mask])
      toks = jnp.concatenate([toks, extra_toks])
      lens = jnp.concatenate([lens, extra_lens])
    z = lm.score_fn(params, inp.prompt_ids, inp.prompt_lengths, toks, lens)
    z = jnp.where(mask, z, -jnp.inf)
    zt = z / temperature
    pi_theta = jax.nn.softmax(zt)
    lm_argmax = jnp.argmax(zt)
    n_all = ids.shape[0]
    zeros = jnp.zeros((n_all,), jnp.float32)
    if name in ("static", "memory-prompt"):
      adv, q, cnt = zeros, zeros, jnp.zeros((n_all,), jnp.int32)
      value = jnp.float32(0.0)
      n_nb = jnp.sum(nb.mask, dtype=jnp.int32) if uses_memory else jnp.int32(0)
      scores, used_beta = zt, jnp.float32(0.0)
      pi = pi_theta
      _, k_choice = jax.random.split(key)
      index = (
          lm_argmax
          if greedy
          else jax.random.categorical(k_choice, zt).astype(jnp.int32)
      )
    else:  # jitrl (paper rule) or jitrl-reference: the policy decides.
      out = rule.act(
          memory, zt, ids, mask, inp.views, key, inp.steps, episodes_done
      )
      d = out.diagnostics
      adv, q, cnt = d.rule_advantages, d.q_values, d.counts
      value, n_nb, used_beta = d.value, d.num_neighbours, d.weight
      scores, pi, index = d.scores, d.pi, out.index
    index = index.astype(jnp.int32)
    if not extra:  # Keep the [C + X] candidate axis for every agent.
      pad = slots

      def _p(x, v):
        return jnp.concatenate([x, jnp.full((pad,), v, x.dtype)])

      z, scores, pi_theta, pi = (
          _p(z, -jnp.inf),
          _p(scores, -jnp.inf),
          _p(pi_theta, 0.0),
          _p(pi, 0.0),
      )
      adv, q, cnt = _p(adv, 0.0), _p(q, 0.0), _p(cnt, 0)
      ids, mask = _p(ids, -1), _p(mask, False)
    del c
    return DecisionOutput(
        index=index,
        action_ids=ids[index],
        lm_argmax=lm_argmax.astype(jnp.int32),
        logits=z,
        modulated=scores,
        pi_theta=pi_theta,
        pi=pi,
        advantages=adv.astype(jnp.float32),
        q_values=q.astype(jnp.float32),
        counts=cnt.astype(jnp.int32),
        value=jnp.asarray(value, jnp.float32),
        num_neighbours=jnp.asarray(n_nb, jnp.int32),
        beta=used_beta,
        candidate_ids=ids,
        candidate_mask=mask,
    )

  def _decide(params, memory, table, inputs, key, episodes_done):
    traces[0] += 1
    b = inputs.prompt_ids.shape[0]
    keys = jax.random.split(key, b)
    return jax.vmap(_decide_one, in_axes=(None, None, None, 0, 0, None))(
        params, memory, table, inputs, keys, episodes_done
    )

  decide = jax.jit(_decide)

  @jax.jit
  def retrieve(memory, views, steps):
    return jax.vmap(_retrieve_one, in_axes=(None, 0, 0))(memory, views, steps)

  def _stacked_views(observations):
    per_game = [state_views(o.current, o.history, o.task) for o in observations]
    return tuple(
        token_sets.stack_token_sets([vs[j] for vs in per_game])
        for j in range(len(view_sizes))
    )

  def prepare(
      observations: Sequence[GameObservation],
      experiences: Sequence[str] | None = None,
      *,
      min_tokens: int = 0,
  ) -> DecisionInput:
    """Host: prompts, candidates and views of B games -> padded arrays.

    Args:
      observations: B games.
      experiences: B memory texts for the prompt (memory-prompt agent).
      min_tokens: the candidate token bucket T is at least this (the
        longest memory action that may join the candidates).

    Returns:
      The padded `DecisionInput`.
    """
    if not observations:
      raise ValueError("prepare needs at least one game observation")
    prompts, cands, views = [], [], []
    for i, obs in enumerate(observations):
      actions = list(
          dict.fromkeys(a.strip() for a in obs.valid_actions if a and a.strip())
      )
      if not actions:
        raise ValueError(
            f"game {i} has an empty valid-action list at step {obs.step}; an "
            "agent needs at least one candidate (use "
            "jitrl_jax.envs.base.with_fallback)"
        )
      actions = actions[: max(candidate_buckets)]
      exp = experiences[i] if experiences else ""
      ids = None
      for turns in range(history_turns, -1, -1):
        shown = obs._replace(valid_actions=actions)
        text = lm.render_prompt(
            SYSTEM_PROMPT,
            build_user_message(
                shown,
                history_turns=turns,
                list_actions=list_actions,
                experiences=exp,
                max_observation_chars=max_observation_chars,
            ),
        )
        ids = lm.encode(text)
        if len(ids) <= max(prompt_buckets):
          break
      limit = max(prompt_buckets)
      if len(ids) > limit:  # Keep the start (system) and the end (the turn).
        head = 32
        ids = ids[:head] + ids[len(ids) - (limit - head) :]
      prompts.append(ids)
      cands.append(actions)
      views.append(state_views(obs.current, obs.history, obs.task))
    l = _bucket(max(len(p) for p in prompts), prompt_buckets, "prompt")
    c = _bucket(max(len(a) for a in cands), candidate_buckets, "candidate")
    cand_tokens = [
        [(list(lm.encode(a)) + list(lm.candidate_suffix)) for a in acts]
        for acts in cands
    ]
    longest = max(min_tokens, max(len(t) for ts in cand_tokens for t in ts))
    t = _bucket(longest, token_buckets, "token")
    b = len(observations)
    ctoks = np.full((b, c, t), lm.pad_id, np.int32)
    clens = np.zeros((b, c), np.int32)
    cids = np.full((b, c), -1, np.int32)
    for i, (acts, ts) in enumerate(zip(cands, cand_tokens)):
      for j, (a, tk) in enumerate(zip(acts, ts)):
        tk = tk[:t]
        ctoks[i, j, : len(tk)] = tk
        clens[i, j] = len(tk)
        cids[i, j] = action_id(a)
    v = tuple(
        token_sets.stack_token_sets([vs[j] for vs in views])
        for j in range(len(view_sizes))
    )
    return DecisionInput(
        prompt_ids=_pad_rows(prompts, l, lm.pad_id),
        prompt_lengths=np.asarray([len(p) for p in prompts], np.int32),
        candidate_tokens=ctoks,
        candidate_lengths=clens,
        candidate_ids=cids,
        candidate_mask=clens > 0,
        views=v,
        steps=np.asarray([o.step for o in observations], np.int32),
    )

  def act(
      state: AgentState, observations: Sequence[GameObservation], key: jax.Array
  ) -> list[Choice]:
    """Host wrapper: B observations -> B choices with their diagnostics.

    The key is consumed.
    """
    experiences = None
    if name == "memory-prompt":
      views = _stacked_views(observations)
      steps = np.asarray([o.step for o in observations], np.int32)
      nb = jax.device_get(retrieve(state.memory, views, steps))
      experiences = [
          format_experiences(
              state.action_texts,
              nb.action_ids[i],
              nb.returns[i],
              nb.mask[i],
              max_lines=experience_lines,
          )
          for i in range(len(observations))
      ]
    longest_memory_action = (
        int(np.max(jax.device_get(state.table.lengths))) if extra else 0
    )
    inputs = prepare(
        observations, experiences, min_tokens=longest_memory_action
    )
    out = jax.device_get(
        decide(
            lm.params,
            state.memory,
            state.table,
            inputs,
            key,
            state.episodes_done,
        )
    )
    choices = []
    for i, obs in enumerate(observations):
      j = int(out.index[i])
      c = inputs.candidate_ids.shape[1]
      acts = list(
          dict.fromkeys(a.strip() for a in obs.valid_actions if a and a.strip())
      )[:c]
      from_memory = j >= c
      if from_memory:
        text = state.action_texts.get(int(out.action_ids[i]), "look")
      else:
        text = acts[j]
      a = int(out.lm_argmax[i])

      def f(x):
        x = float(x)
        return x if math.isfinite(x) else None

      diag = {
          "num_neighbours": int(out.num_neighbours[i]),
          "value": f(out.value[i]),
          "q": f(out.q_values[i, j]),
          "advantage": f(out.advantages[i, j]),
          "beta": f(out.beta[i]),
          "pi_theta": f(out.pi_theta[i, j]),
          "pi": f(out.pi[i, j]),
          "lm_argmax_action": (
              acts[a]
              if a < c
              else state.action_texts.get(int(out.candidate_ids[i, a]), "?")
          ),
          "flipped": bool(j != a),
          "num_candidates": int(np.sum(out.candidate_mask[i])),
          "num_memory_candidates": int(np.sum(out.candidate_mask[i, c:])),
          "prompt_tokens": int(inputs.prompt_lengths[i]),
      }
      choices.append(
          Choice(action=text, from_memory=bool(from_memory), diagnostics=diag)
      )
    return choices

  # Returns G_t = sum_j gamma^j r_{t+j}, then every step into memory.
  write_episode = jax.jit(rule.observe)

  def observe(
      state: AgentState, trajectories: Sequence[Trajectory]
  ) -> AgentState:
    """Writes finished games into memory (static: counts the episode only)."""
    if not uses_memory:
      return state._replace(episodes_done=state.episodes_done + 1)
    memory = state.memory
    texts = dict(state.action_texts)
    for traj in trajectories:
      n = len(traj.actions)
      if n == 0:
        continue
      # Pad to a power of two so that a run compiles add_episode few times.
      t_pad = 1 << max(3, (n - 1).bit_length())
      views = tuple(
          token_sets.stack_token_sets(
              [traj.views[s][j] for s in range(n)]
              + [token_sets.token_set([], view_sizes[j], multiset=multiset)]
              * (t_pad - n)
          )
          for j in range(len(view_sizes))
      )
      mask = np.arange(t_pad) < n
      rewards = np.zeros((t_pad,), np.float32)
      rewards[:n] = np.asarray(traj.rewards, np.float32)
      ids = np.zeros((t_pad,), np.int32)
      ids[:n] = [action_id(a) for a in traj.actions]
      memory = write_episode(
          memory,
          views,
          jnp.asarray(ids),
          jnp.asarray(rewards),
          jnp.asarray(mask),
          jnp.int32(traj.task_id),
          jnp.int32(traj.episode_id),
      )
      for a in traj.actions:
        aid = action_id(a)
        if aid in texts:
          texts.pop(aid)  # Re-insert: most recently used last.
        texts[aid] = normalise_action(a)
    return AgentState(
        memory=memory,
        table=_table_from_texts(texts),
        action_texts=texts,
        episodes_done=state.episodes_done + 1,
    )

  return TextGameAgent(
      name=name,
      init=init,
      act=act,
      observe=observe,
      prepare=prepare,
      decide=decide,
      retrieve=retrieve,
      state_views=state_views,
      restore=restore,
      num_compiles=lambda: traces[0],
  )
