"""Tests for experiments/theory_lab.py (the quick setting, statistically).

One quick lab run (setUpClass) is shared: it writes the outputs that the
output tests read, and its cached compiled programs serve the statistical
tests, so the file compiles each program once.
"""

import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import theory_lab
from experiments.configs import theory_lab as lab_config
from jitrl_jax import memory as memory_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax.envs import synthetic


def _quick_config():
  cfg = lab_config.get_config()
  cfg.quick = True
  return theory_lab.resolve_config(cfg)


class TheoryLabRunTest(parameterized.TestCase):
  """The quick lab end to end, and statistics over its agents."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cfg = _quick_config()
    cls.out_dir = tempfile.mkdtemp(prefix="theory_lab_test_")
    cls.results = theory_lab.run_lab(cls.cfg, cls.out_dir, log=lambda _: None)
    # Cached runner: no recompilation.
    cls.bandit = theory_lab.compare_rules(
        cls.cfg,
        "bandit",
        ("closed_form", "gradient_kl", "static"),
        log=lambda _: None,
    )

  def test_outputs_written(self):
    for name in (
        "results.json",
        "regret_curves.png",
        "diagnostics.png",
        "bias_variance.png",
        "sweeps.png",
    ):
      path = os.path.join(self.out_dir, name)
      self.assertTrue(os.path.isfile(path), path)
      self.assertGreater(os.path.getsize(path), 1000)
    with open(os.path.join(self.out_dir, "results.json")) as f:
      results = json.load(f)  # strict JSON (no NaN)
    self.assertEqual(set(results["compare"]), {"bandit", "tree"})
    self.assertEqual(set(results["compare"]["bandit"]), set(theory_lab.RULES))
    summary = results["compare"]["tree"]["closed_form"]
    self.assertLen(summary["regret_curve"]["mean"], self.cfg.episodes)
    self.assertEqual(summary["agents"], self.cfg.agents)
    m = str(self.cfg.jitrl.memory_size)
    self.assertLen(
        results["sweep_memory_k"]["summaries"][m], len(self.cfg.sweep.ks)
    )
    self.assertLen(
        results["sweep_beta"]["summaries"], len(self.cfg.sweep.betas)
    )

  def test_closed_form_has_lower_regret_than_static(self):
    # Paired over agents (same instances and draws), second half of the run.
    half = self.cfg.episodes // 2
    cf = self.bandit["closed_form"].regret[:, half:].mean(axis=1)
    st = self.bandit["static"].regret[:, half:].mean(axis=1)
    diff = st - cf
    se = diff.std(ddof=1) / np.sqrt(diff.shape[0])
    # Margin: at least 0.03 regret per episode (about 5% of static's) and
    # 4 standard errors.
    self.assertGreater(diff.mean(), 0.03)
    self.assertGreater(diff.mean(), 4 * se)

  def test_gradient_kl_tracks_closed_form(self):
    # Same objective: with the lab's 100 Adam steps the policies differ by
    # a total variation below 0.01 per step on average, and the regret
    # curves by less than 0.01 per episode.
    gkl = self.bandit["gradient_kl"]
    cf = self.bandit["closed_form"]
    self.assertLess(float(np.mean(gkl.tv_closed_form)), 0.01)
    np.testing.assert_allclose(
        gkl.regret.mean(axis=0), cf.regret.mean(axis=0), atol=0.01
    )

  def test_beta_zero_is_static_exactly(self):
    # Common random numbers: closed_form with beta = 0 acts from pi_theta
    # with the same uniforms as static, so every metric but the A error is
    # identical.
    runner = theory_lab.get_runner(
        self.cfg, "bandit", theory_lab.settings_for(self.cfg)
    )
    hyper = theory_lab.default_hyper(self.cfg)._replace(beta=jnp.float32(0))
    keys = theory_lab.agent_keys(self.cfg.seed, self.cfg.agents)
    zero = runner(theory_lab.rule_id("closed_form"), hyper, keys)
    static = self.bandit["static"]
    np.testing.assert_array_equal(np.asarray(zero.regret), static.regret)
    np.testing.assert_array_equal(np.asarray(zero.ret), static.ret)

  def test_static_regret_matches_the_known_value(self):
    # Static's expected regret per step in cluster c is max_a Q[c] -
    # softmax(z[c]) . Q[c]; contexts are uniform over clusters, so an
    # episode's expected regret is T * mean_c of it, for every agent.
    env = theory_lab.make_env(self.cfg, "bandit")
    keys = theory_lab.agent_keys(self.cfg.seed, self.cfg.agents)

    def expected(key):
      params = env.init_params(jax.random.split(key)[0])
      pi = jax.nn.softmax(params.prior_logits)
      per_cluster = params.q_values.max(1) - jnp.sum(pi * params.q_values, 1)
      return env.horizon * per_cluster.mean()

    want = float(jnp.mean(jax.jit(jax.vmap(expected))(keys)))
    regret = self.bandit["static"].regret
    se = regret.mean(axis=1).std(ddof=1) / np.sqrt(regret.shape[0])
    self.assertAlmostEqual(float(regret.mean()), want, delta=4 * se + 1e-4)

  def test_return_plus_regret_is_optimal(self):
    # E[return + regret] = sum_t max_a Q(s_t, a) = T * E_c[max_a Q[c]].
    env = theory_lab.make_env(self.cfg, "bandit")
    keys = theory_lab.agent_keys(self.cfg.seed, self.cfg.agents)
    best = jax.jit(
        jax.vmap(
            lambda k: env.horizon
            * env.init_params(jax.random.split(k)[0]).q_values.max(1).mean()
        )
    )(keys)
    m = self.bandit["closed_form"]
    total = (m.ret + m.regret).mean()
    # Reward noise 0.5 per step: se ~ 0.5 * sqrt(T / (A E)).
    se = 0.5 * np.sqrt(env.horizon / m.ret.size)
    self.assertAlmostEqual(float(total), float(best.mean()), delta=5 * se)


class GradientKLTest(absltest.TestCase):

  def test_converges_to_closed_form_at_many_times_the_cost(self):
    # 128 random problems: C = 4 actions, z ~ 2 N(0, 1), A ~ U(-1, 1),
    # beta ~ U(0.5, 8). The closed form softmax(z + beta A) is one
    # evaluation; Adam (lr 0.1) on the logits needs tens of gradient steps
    # to come within 1e-2 of it (max abs difference of probabilities) and
    # gets within 5e-3 after 400.
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    n, c, steps = 128, 4, 400
    z = 2.0 * jax.random.normal(k1, (n, c))
    a = jax.random.uniform(k2, (n, c), minval=-1.0, maxval=1.0)
    beta = jax.random.uniform(k3, (n,), minval=0.5, maxval=8.0)

    def errors(z, a, beta):
      path = theory_lab.gradient_kl_policy(
          z, a, beta, steps=steps, optimizer=optax.adam(0.1), trajectory=True
      )
      closed = jax.nn.softmax(z + beta * a)
      return jnp.max(jnp.abs(path - closed), axis=-1)  # [steps]

    err = np.asarray(jax.jit(jax.vmap(errors))(z, a, beta))
    self.assertLess(err[:, -1].max(), 5e-3)
    reached = err < 1e-2
    self.assertTrue(reached.any(axis=1).all())
    steps_needed = reached.argmax(axis=1) + 1
    # The closed form costs 1; the gradient route at least 10x that in the
    # median problem, and up to ~100 gradient steps.
    self.assertGreaterEqual(np.median(steps_needed), 10)
    self.assertGreaterEqual(steps_needed.max(), 50)


class PiecesTest(parameterized.TestCase):

  @parameterized.parameters(
      (0.0, 0), (0.19, 0), (0.2, 1), (0.69, 1), (0.71, 2), (0.9999, 2)
  )
  def test_inverse_cdf_by_hand(self, u, want):
    # cdf of [0.2, 0.5, 0.3] = [0.2, 0.7, 1.0].
    pi = jnp.asarray([0.2, 0.5, 0.3])
    self.assertEqual(int(theory_lab.inverse_cdf(pi, jnp.float32(u))), want)

  def test_reinforce_by_hand(self):
    # One state, two actions, table 0 (pi = [0.5, 0.5]), action 0, return
    # 1, baseline 0: grad of -adv log pi(0) = -(1 - 0.5, 0 - 0.5); SGD with
    # lr 0.5 -> table [0.25, -0.25]; baseline 0 + 0.1 (1 - 0) = 0.1.
    settings = theory_lab.Settings(
        episodes=1, memory_size=1, k_max=1, pg_learning_rate=0.5
    )
    agent = theory_lab.AgentState(
        memory=memory_lib.init(1, (2,)),
        table=jnp.zeros((1, 2)),
        baseline=jnp.zeros((1,)),
    )
    args = (jnp.asarray([0]), jnp.asarray([0]), jnp.asarray([1.0]))
    out = theory_lab.pg_update(settings, agent, *args, ppo=False)
    np.testing.assert_allclose(out.table, [[0.25, -0.25]], atol=1e-6)
    np.testing.assert_allclose(out.baseline, [0.1], atol=1e-6)
    # One PPO epoch starts at ratio 1, inside the clip: the same step.
    one_epoch = theory_lab.Settings(
        episodes=1, memory_size=1, k_max=1, pg_learning_rate=0.5, ppo_epochs=1
    )
    ppo = theory_lab.pg_update(one_epoch, agent, *args, ppo=True)
    np.testing.assert_allclose(ppo.table, out.table, atol=1e-6)

  def test_ppo_clips(self):
    # Four epochs, lr 2. Epoch 1 (ratio 1): table [1, -1], pi(0) = 0.881,
    # ratio 1.76 > 1 + 0.2, so the clipped objective is flat and epochs
    # 2-4 do not move: pi(0) stays 0.881.
    settings = theory_lab.Settings(
        episodes=1, memory_size=1, k_max=1, pg_learning_rate=2.0, ppo_epochs=4
    )
    agent = theory_lab.AgentState(
        memory=memory_lib.init(1, (2,)),
        table=jnp.zeros((1, 2)),
        baseline=jnp.zeros((1,)),
    )
    args = (jnp.asarray([0]), jnp.asarray([0]), jnp.asarray([1.0]))
    clipped = theory_lab.pg_update(settings, agent, *args, ppo=True)
    p0 = float(jax.nn.softmax(clipped.table[0])[0])
    self.assertAlmostEqual(
        p0, float(jax.nn.softmax(jnp.asarray([1.0, -1.0]))[0]), places=5
    )

  def test_closed_form_step_equals_policy_act(self):
    # The lab's closed_form and reference steps are policy.act's, composed
    # from the same library pieces with the same key split.
    cfg = _quick_config()
    env = theory_lab.make_env(cfg, "bandit")
    params = env.init_params(jax.random.key(1))
    settings = theory_lab.settings_for(cfg)
    # A memory of 24 contexts with random actions and returns.
    agent = theory_lab.init_agent(env, settings, params)
    hyper = theory_lab.default_hyper(cfg)
    t = 24
    states = jax.vmap(lambda k: env.reset(params, k))(
        jax.random.split(jax.random.key(3), t)
    )
    k_a, k_r = jax.random.split(jax.random.key(4))
    memory = jax.jit(memory_lib.add_episode)(
        agent.memory,
        (states.tokens,),
        jax.random.randint(k_a, (t,), 0, env.num_actions),
        jax.random.uniform(k_r, (t,)),
        jnp.zeros((t,)),
        jnp.ones((t,), bool),
        jnp.int32(0),
        jnp.int32(0),
    )
    agent = agent._replace(memory=memory)
    state = env.reset(params, jax.random.key(99))
    views = env.views(params, state)
    z = env.prior_logits(params, state)
    c = env.num_actions
    key = jax.random.key(7)

    for rule, lab_rule in (
        ("paper", "closed_form"),
        ("reference", "reference"),
    ):
      agent_fns = policy_lib.jitrl(
          k=settings.k_max,
          beta=float(hyper.beta),
          lam=float(hyper.lam),
          alpha=float(hyper.alpha),
          view_weights=(1.0,),
          threshold=0.0,
          rule=rule,
      )
      act = jax.jit(agent_fns.act)(
          agent.memory,
          z,
          jnp.arange(c),
          jnp.ones((c,), bool),
          views,
          key,
          episodes_done=6,
      )
      out = jax.jit(
          lambda rule, agent, state, key: theory_lab._policy(  # pylint: disable=protected-access
              env,
              settings,
              hyper,
              rule,
              agent,
              params,
              state,
              key,
              6,
              theory_lab.state_values(env, params, state),
          )
      )(theory_lab.rule_id(lab_rule), agent, state, key)
      np.testing.assert_allclose(out.pi, act.diagnostics.pi, atol=1e-6)
      if rule == "reference":
        self.assertEqual(int(out.action), int(act.index))

  def test_a_error_by_hand(self):
    # Two steps with squared errors 1 and 3 -> RMS sqrt(4 / 2) = sqrt(2).
    m = theory_lab.EpisodeMetrics(
        *[np.zeros((1, 1))] * len(theory_lab.EpisodeMetrics._fields)
    )._replace(a_err2=np.asarray([[4.0]]), a_count=np.asarray([[2.0]]))
    self.assertAlmostEqual(float(theory_lab.a_error(m)), np.sqrt(2.0))
    self.assertTrue(np.isnan(theory_lab.q_error(m)))

  def test_quick_config_is_small(self):
    cfg = _quick_config()
    self.assertLessEqual(cfg.episodes, 16)
    self.assertLessEqual(cfg.sweep.agents, 32)
    self.assertIn(cfg.jitrl.memory_size, cfg.sweep.memory_sizes)
    for name in cfg.envs:
      self.assertIsInstance(
          theory_lab.make_env(cfg, name), synthetic.Environment
      )


if __name__ == "__main__":
  absltest.main()
