"""Pure-JAX environments with token-set states and exactly known values.

The theory lab (experiments/theory_lab.py) compares JitRL's update rules on
problems where every quantity the method estimates is known in closed form:
the action values Q(s, a), the advantages A(s, a) and the optimal policy. The
states are token sets (`jitrl_jax.token_sets.TokenSet`), so retrieval and the
advantage estimate run exactly as they do for text games, and the "LM prior"
pi_theta is a table of logits that is good in most states and wrong in known
places (the *traps*).

Two environments:

* `contextual_bandit`: every step draws a context from one of N clusters. A
  cluster is a prototype token set (a few tokens shared by all clusters, the
  rest its own); a context is its cluster's prototype with each token replaced,
  with probability `token_noise`, by a random noise token. Action a in cluster c
  pays Q[c, a] + reward_noise * eps. Each step is an independent problem (the
  return of a step is its reward, gamma = 0).
* `tree_mdp`: a complete tree of branching C and depth D. The agent walks from
  the root to a leaf in D steps, one action per level; the only reward comes at
  the leaf (delayed reward, so credit has to flow back over D steps through
  the discounted return). Q*(s, a) = gamma^(D-1-d) * (best leaf value under the
  child a). The state's token set holds one token per (level, action) of the
  path so far, a token for the node, and a few noise tokens drawn per visit.

Both are written as pure functions that take the environment parameters
explicitly, so one jit covers every draw and `jax.vmap` over parameters gives
each agent its own instance:

  env = contextual_bandit(num_clusters=8)
  params = env.init_params(key)              # jittable, vmappable
  state = env.reset(params, key)
  views = env.views(params, state)           # tuple[TokenSet]
  z = env.prior_logits(params, state)        # [C] pi_theta's logits
  q = env.true_q(params, state)              # [C] exact Q
  state, reward, done = env.step(params, state, action, key)

Randomness is explicit: `reset`, `step` and `init_params` consume their key.

Dimension letters: C actions (candidates), S set size, N clusters / internal
nodes, P prototype size, D tree depth.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jitrl_jax import token_sets

TokenSet = token_sets.TokenSet


class Environment(NamedTuple):
  """A synthetic environment as a bundle of pure functions.

  Attributes:
    name: "bandit" or "tree".
    init_params: (key) -> params; draws one instance (values, prior, traps).
    reset: (params, key) -> state.
    step: (params, state, action [] int32, key) -> (state, reward [] float32,
      done [] bool).
    views: (params, state) -> tuple of TokenSet views (one view here).
    prior_logits: (params, state) -> [C] float32 logits z of pi_theta.
    true_q: (params, state) -> [C] float32 exact Q (Q* for the tree).
    state_id: (params, state) -> [] int32 in [0, num_states): the hidden state
      identity (cluster or internal node), for tabular baselines.
    num_actions: C.
    num_states: number of distinct hidden states an agent can act in.
    horizon: T, steps per episode (fixed).
    view_sizes: S of each view.
    gamma: discount of the returns that `true_q` refers to (0 for the bandit:
      each step is its own problem).
    regret_discount: weight gamma_r^t of step t in the episode's return and
      regret (1 for the bandit, gamma for the tree), so that in expectation
      return + regret = optimal return.
  """

  name: str
  init_params: Callable
  reset: Callable
  step: Callable
  views: Callable
  prior_logits: Callable
  true_q: Callable
  state_id: Callable
  num_actions: int
  num_states: int
  horizon: int
  view_sizes: tuple[int, ...]
  gamma: float
  regret_discount: float


# ----------------------------------------------------------------------------
# Contextual bandit.


class BanditParams(NamedTuple):
  """One contextual-bandit instance."""

  prototypes: jax.Array  # [N, P] int32 token ids of each cluster's prototype
  q_values: jax.Array  # [N, C] float32 expected reward Q[c, a]
  prior_logits: jax.Array  # [N, C] float32 logits z of pi_theta per cluster
  trap: jax.Array  # [N] bool True where pi_theta prefers a suboptimal action
  trap_action: jax.Array  # [N] int32 the action pi_theta prefers at a trap


class BanditState(NamedTuple):
  """The current context of a contextual bandit."""

  cluster: jax.Array  # [] int32 hidden cluster of the context
  tokens: TokenSet  # ids [S] int32, counts [S] float32 (set form)
  t: jax.Array  # [] int32 step within the episode


def bandit_context(
    params: BanditParams, cluster, key, *, token_noise, noise_vocab, set_size
) -> TokenSet:
  """Noisy token set of one context of `cluster`.

  Each prototype token is replaced, with probability `token_noise`, by a noise
  token drawn uniformly from [noise_base, noise_base + noise_vocab), where
  noise_base is one past the largest prototype id. Duplicates are merged, so
  the set has at most P ids (set form, counts 1).

  Args:
    params: the bandit instance.
    cluster: [] int32 cluster index.
    key: PRNG key, consumed.
    token_noise: replacement probability in [0, 1].
    noise_vocab: number of distinct noise tokens.
    set_size: S >= P.

  Returns:
    TokenSet with ids [S], counts [S].
  """
  proto = params.prototypes[cluster]
  noise_base = params.prototypes.shape[0] * params.prototypes.shape[1]
  k_flip, k_tok = jax.random.split(key)
  flip = jax.random.bernoulli(k_flip, token_noise, proto.shape)
  noise = noise_base + jax.random.randint(
      k_tok, proto.shape, 0, noise_vocab, dtype=jnp.int32
  )
  ids = jnp.where(flip, noise, proto)
  return token_sets.as_token_set(ids, size=set_size, multiset=False)


def contextual_bandit(
    *,
    num_clusters: int = 8,
    num_actions: int = 4,
    proto_size: int = 8,
    num_shared: int = 2,
    token_noise: float = 0.25,
    noise_vocab: int = 256,
    reward_noise: float = 0.5,
    horizon: int = 4,
    prior_scale: float = 4.0,
    num_traps: int = 3,
    trap_margin: float = 1.0,
) -> Environment:
  """A contextual bandit over clusters of token sets.

  Token layout: every prototype is num_shared shared tokens [0, num_shared)
  followed by proto_size - num_shared tokens of its own; cluster c owns
  [num_shared + c * U, num_shared + (c + 1) * U), U = proto_size - num_shared.
  Noise tokens start at num_clusters * proto_size. Two noise-free contexts of
  different clusters have Jaccard num_shared / (2 P - num_shared); of the same
  cluster, 1.

  An instance (`init_params`) draws Q[c, a] ~ U(0, 1). The prior's logits are
  z[c] = prior_scale * (Q[c] - mean_a Q[c]) (good: it prefers better actions),
  except in the first `num_traps` clusters (the traps), where a random
  suboptimal action gets the top logit, max(z[c]) + trap_margin.

  Args:
    num_clusters: N hidden clusters (states).
    num_actions: C actions, the same in every context.
    proto_size: P tokens per prototype.
    num_shared: tokens shared by every prototype (0 <= num_shared < P).
    token_noise: probability that a prototype token is replaced by noise.
    noise_vocab: number of distinct noise tokens.
    reward_noise: standard deviation of the Gaussian reward noise.
    horizon: T contexts per episode.
    prior_scale: inverse temperature of the prior.
    num_traps: clusters where the prior prefers a suboptimal action.
    trap_margin: logit margin of the trap action over the prior's best other.

  Returns:
    An `Environment` whose states are `BanditState`s.
  """
  if not 0 <= num_shared < proto_size:
    raise ValueError("need 0 <= num_shared < proto_size")
  if not 0 <= num_traps <= num_clusters:
    raise ValueError("need 0 <= num_traps <= num_clusters")
  if num_actions < 2:
    raise ValueError("need at least 2 actions")
  own = proto_size - num_shared
  set_size = proto_size

  def init_params(key) -> BanditParams:
    k_q, k_trap = jax.random.split(key)
    shared = jnp.broadcast_to(
        jnp.arange(num_shared, dtype=jnp.int32), (num_clusters, num_shared)
    )
    owned = (
        num_shared
        + own * jnp.arange(num_clusters, dtype=jnp.int32)[:, None]
        + jnp.arange(own, dtype=jnp.int32)[None, :]
    )
    prototypes = jnp.concatenate([shared, owned], axis=1)
    q = jax.random.uniform(k_q, (num_clusters, num_actions))
    best = jnp.argmax(q, axis=1)
    offset = jax.random.randint(k_trap, (num_clusters,), 1, num_actions)
    trap_action = ((best + offset) % num_actions).astype(jnp.int32)
    trap = jnp.arange(num_clusters) < num_traps
    logits = prior_scale * (q - q.mean(axis=1, keepdims=True))
    trap_logit = logits.max(axis=1) + trap_margin
    one_hot = jax.nn.one_hot(trap_action, num_actions, dtype=bool)
    logits = jnp.where(trap[:, None] & one_hot, trap_logit[:, None], logits)
    return BanditParams(
        prototypes, q, logits.astype(jnp.float32), trap, trap_action
    )

  def _context(params, t, key):
    k_c, k_ctx = jax.random.split(key)
    cluster = jax.random.randint(k_c, (), 0, num_clusters, dtype=jnp.int32)
    tokens = bandit_context(
        params,
        cluster,
        k_ctx,
        token_noise=token_noise,
        noise_vocab=noise_vocab,
        set_size=set_size,
    )
    return BanditState(cluster, tokens, jnp.asarray(t, jnp.int32))

  def reset(params, key) -> BanditState:
    return _context(params, 0, key)

  def step(params, state, action, key):
    k_r, k_next = jax.random.split(key)
    mean = params.q_values[state.cluster, action]
    reward = mean + reward_noise * jax.random.normal(k_r, ())
    t = state.t + 1
    return (
        _context(params, t, k_next),
        reward.astype(jnp.float32),
        (t >= horizon),
    )

  def views(params, state):
    del params
    return (state.tokens,)

  def prior_logits(params, state):
    return params.prior_logits[state.cluster]

  def true_q(params, state):
    return params.q_values[state.cluster]

  def state_id(params, state):
    del params
    return state.cluster

  return Environment(
      name="bandit",
      init_params=init_params,
      reset=reset,
      step=step,
      views=views,
      prior_logits=prior_logits,
      true_q=true_q,
      state_id=state_id,
      num_actions=num_actions,
      num_states=num_clusters,
      horizon=horizon,
      view_sizes=(set_size,),
      gamma=0.0,
      regret_discount=1.0,
  )


# ----------------------------------------------------------------------------
# Tree MDP with delayed reward.


class TreeParams(NamedTuple):
  """One tree-MDP instance."""

  edge_values: jax.Array  # [N, C] float32 value of each edge (node, action)
  leaf_values: jax.Array  # [C^D] float32 expected reward of each leaf
  q_values: jax.Array  # [N, C] float32 Q*(node, a) for the N internal nodes
  prior_logits: jax.Array  # [N, C] float32 logits z of pi_theta per node
  trap: jax.Array  # [N] bool True where pi_theta prefers a suboptimal child
  trap_action: jax.Array  # [N] int32 the child pi_theta prefers at a trap


class TreeState(NamedTuple):
  """A node of the tree and the path that led to it."""

  node: jax.Array  # [] int32 level-order index (root 0; leaves >= N)
  depth: jax.Array  # [] int32 level of the node, 0 at the root
  path: jax.Array  # [D] int32 actions taken so far, -1 after `depth`
  noise: jax.Array  # [num_noise] int32 noise tokens of this visit
  t: jax.Array  # [] int32 step within the episode (= depth)


def tree_leaf_values(edge_values, *, branching: int, depth: int):
  """Leaf values as the mean edge value along each root-to-leaf path.

  With level-order indexing the internal nodes of level d are rows
  [(C^d - 1) / (C - 1), (C^(d+1) - 1) / (C - 1)) of edge_values, and the
  path sums of level d + 1 are those of level d plus their edges, flattened.

  Args:
    edge_values: [N, C] value of taking action a in internal node n.
    branching: C.
    depth: D.

  Returns:
    [C^D] float32: leaf l's value is (1 / D) sum of the D edges above it.
  """
  sums = jnp.zeros((1,), jnp.float32)
  for d in range(depth):
    first = (branching**d - 1) // (branching - 1)
    block = edge_values[first : first + branching**d]  # [C^d, C]
    sums = (sums[:, None] + block).reshape(-1)
  return (sums / depth).astype(jnp.float32)


def tree_q_values(leaf_values, *, branching: int, depth: int, gamma: float):
  """Q*(node, a) of every internal node, bottom-up over the levels.

  With level-order indexing (children of n are n * C + 1 + a) the nodes of
  level d are a contiguous block of C^d and their children the next block, so
  best[d] = max over children of best[d + 1], reshaped [C^d, C].

  Args:
    leaf_values: [C^D] expected reward of each leaf, in level order.
    branching: C.
    depth: D.
    gamma: discount per step.

  Returns:
    [N, C] float32, N = (C^D - 1) / (C - 1); row n is
    gamma^(D - 1 - d(n)) * (best leaf value under child a of n).
  """
  best = leaf_values
  rows = []
  for d in range(depth - 1, -1, -1):
    children = best.reshape(branching**d, branching)
    rows.append(gamma ** (depth - 1 - d) * children)
    best = children.max(axis=1)
  return jnp.concatenate(rows[::-1], axis=0).astype(jnp.float32)


def tree_mdp(
    *,
    branching: int = 3,
    depth: int = 3,
    gamma: float = 0.9,
    num_noise: int = 2,
    noise_vocab: int = 256,
    reward_noise: float = 0.3,
    prior_scale: float = 4.0,
    num_traps: int = 2,
    trap_margin: float = 1.0,
) -> Environment:
  """A tree MDP with the only reward at the leaf (delayed reward).

  Node n at depth d has children n * C + 1 + a; the episode lasts D steps and
  ends at a leaf, whose reward is leaf_value + reward_noise * eps (every
  earlier reward is 0). An instance draws a value U(0, 1) for every edge and
  a leaf's value is the mean of the D edges on its path
  (`tree_leaf_values`), so early choices matter (with i.i.d. leaf values the
  best leaf under every root child would be nearly as good). Q*(s, a) is
  `tree_q_values`. The prior's logits are
  z(n) = prior_scale * Q*(n) / gamma^(D-1-d) (prefers the child with the best
  leaf), except at the traps: the first `num_traps` nodes of the optimal path
  (the root, then its optimal child, ...), where a random suboptimal child
  gets the top logit. So pi_theta's greedy path misses the best leaf, and
  fixing the root's choice needs the leaf reward to flow back D - 1 steps.

  Token layout of a state at depth d: path tokens j * C + a_j for j < d,
  the node token D * C + n, and num_noise noise tokens from
  [D * C + total_nodes, + noise_vocab), drawn afresh at every visit.

  Args:
    branching: C children per internal node (= actions).
    depth: D levels of decisions.
    gamma: discount of the returns.
    num_noise: noise tokens per state.
    noise_vocab: number of distinct noise tokens.
    reward_noise: standard deviation of the leaf reward noise.
    prior_scale: inverse temperature of the prior.
    num_traps: traps along the optimal path (<= depth).
    trap_margin: logit margin of the trap action.

  Returns:
    An `Environment` whose states are `TreeState`s.
  """
  if branching < 2 or depth < 1:
    raise ValueError("need branching >= 2 and depth >= 1")
  if not 0 <= num_traps <= depth:
    raise ValueError("need 0 <= num_traps <= depth")
  c = branching
  num_internal = (c**depth - 1) // (c - 1)
  num_leaves = c**depth
  node_base = depth * c
  noise_base = node_base + num_internal + num_leaves
  set_size = depth + 1 + num_noise

  def init_params(key) -> TreeParams:
    k_edge, k_trap = jax.random.split(key)
    edge_values = jax.random.uniform(k_edge, (num_internal, c))
    leaf_values = tree_leaf_values(edge_values, branching=c, depth=depth)
    q = tree_q_values(leaf_values, branching=c, depth=depth, gamma=gamma)
    level = jnp.asarray(
        [d for d in range(depth) for _ in range(c**d)], jnp.int32
    )
    undiscounted = q / gamma ** (depth - 1 - level)[:, None].astype(jnp.float32)
    logits = prior_scale * (
        undiscounted - undiscounted.mean(axis=1, keepdims=True)
    )
    # Walk the optimal path: the first num_traps nodes on it are traps.
    node, trap = jnp.int32(0), jnp.zeros((num_internal,), bool)
    for _ in range(num_traps):
      trap = trap.at[node].set(True)
      node = node * c + 1 + jnp.argmax(q[node]).astype(jnp.int32)
    best = jnp.argmax(q, axis=1)
    offset = jax.random.randint(k_trap, (num_internal,), 1, c)
    trap_action = ((best + offset) % c).astype(jnp.int32)
    trap_logit = logits.max(axis=1) + trap_margin
    one_hot = jax.nn.one_hot(trap_action, c, dtype=bool)
    logits = jnp.where(trap[:, None] & one_hot, trap_logit[:, None], logits)
    return TreeParams(
        edge_values.astype(jnp.float32),
        leaf_values.astype(jnp.float32),
        q,
        logits.astype(jnp.float32),
        trap,
        trap_action,
    )

  def _noise(key):
    return noise_base + jax.random.randint(
        key, (num_noise,), 0, noise_vocab, dtype=jnp.int32
    )

  def reset(params, key) -> TreeState:
    del params
    zero = jnp.int32(0)
    return TreeState(
        zero, zero, jnp.full((depth,), -1, jnp.int32), _noise(key), zero
    )

  def step(params, state, action, key):
    k_r, k_noise = jax.random.split(key)
    action = jnp.asarray(action, jnp.int32)
    node = state.node * c + 1 + action
    new_depth = state.depth + 1
    path = state.path.at[state.depth].set(action, mode="drop")
    done = new_depth >= depth
    leaf = jnp.clip(node - num_internal, 0, num_leaves - 1)
    leaf_reward = params.leaf_values[leaf] + reward_noise * jax.random.normal(
        k_r, ()
    )
    reward = jnp.where(done, leaf_reward, 0.0).astype(jnp.float32)
    new_state = TreeState(
        node.astype(jnp.int32), new_depth, path, _noise(k_noise), state.t + 1
    )
    return new_state, reward, done

  def views(params, state):
    del params
    levels = jnp.arange(depth, dtype=jnp.int32)
    path_tokens = jnp.where(state.path >= 0, levels * c + state.path, -1)
    ids = jnp.concatenate(
        [path_tokens, (node_base + state.node)[None], state.noise]
    )
    return (token_sets.as_token_set(ids, size=set_size, multiset=False),)

  def internal(state):  # the node of a terminal state is read as the last
    return jnp.clip(state.node, 0, num_internal - 1)

  return Environment(
      name="tree",
      init_params=init_params,
      reset=reset,
      step=step,
      views=views,
      prior_logits=lambda params, state: params.prior_logits[internal(state)],
      true_q=lambda params, state: params.q_values[internal(state)],
      state_id=lambda params, state: internal(state),
      num_actions=c,
      num_states=num_internal,
      horizon=depth,
      view_sizes=(set_size,),
      gamma=gamma,
      regret_discount=gamma,
  )


def make(name: str, **kwargs) -> Environment:
  """Builds a synthetic environment by name ("bandit" or "tree")."""
  if name == "bandit":
    return contextual_bandit(**kwargs)
  if name == "tree":
    return tree_mdp(**kwargs)
  raise ValueError(
      f"unknown synthetic environment {name!r}; " "expected 'bandit' or 'tree'"
  )


def optimal_return(env: Environment, params, states_q) -> jax.Array:
  """Expected optimal return of an episode given its states' true Q.

  Args:
    env: the environment.
    params: its parameters (unused; for symmetry).
    states_q: [T, C] true Q of the states visited.

  Returns:
    [] sum_t w_t max_a Q(s_t, a) for the bandit; max_a Q(s_0, a) for the tree.
  """
  del params
  if env.name == "tree":
    return states_q[0].max()
  return states_q.max(axis=-1).sum()


def step_regret(q, pi) -> jax.Array:
  """Expected one-step regret max_a Q(s, a) - sum_a pi(a) Q(s, a).

  By the performance-difference lemma, summing gamma^t times this along a
  trajectory of pi gives, in expectation, V*(s_0) - V^pi(s_0).

  Args:
    q: [C] true (optimal) action values.
    pi: [C] the policy's probabilities.

  Returns:
    [] float32 >= 0.
  """
  return q.max() - jnp.sum(pi * q)


def num_tree_nodes(branching: int, depth: int) -> int:
  """Number of internal nodes (C^D - 1) / (C - 1) of a complete tree."""
  return (branching**depth - 1) // (branching - 1)


__all__ = [
    "BanditParams",
    "BanditState",
    "Environment",
    "TreeParams",
    "TreeState",
    "bandit_context",
    "contextual_bandit",
    "make",
    "num_tree_nodes",
    "optimal_return",
    "step_regret",
    "tree_leaf_values",
    "tree_mdp",
    "tree_q_values",
]
