"""Tests for jitrl_jax.update."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jitrl_jax import update as up


def _adam_argmax(objective, l0, *, steps, lr):
  """Maximises objective(logits) over free logits with Adam (jitted scan)."""
  opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=1e-3))
  grad = jax.grad(lambda l: -objective(l))

  def step(carry, _):
    l, state = carry
    updates, state = opt.update(grad(l), state, l)
    return (optax.apply_updates(l, updates), state), None

  (l, _), _ = jax.lax.scan(step, (l0, opt.init(l0)), None, length=steps)
  return l


def _lbfgs_argmax(objective, l0, *, steps):
  """Maximises objective(logits) over free logits with optax L-BFGS.

  Adam alone stalls near 1e-5 in probability when pi' has entries ~1e-6
  (the logit Hessian is ill-conditioned there); L-BFGS with its zoom line
  search reaches float64 precision in < 100 steps on these problems.
  """
  loss = lambda l: -objective(l)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry, _):
    l, state = carry
    value, grad = value_and_grad(l, state=state)
    updates, state = opt.update(
        grad, state, l, value=value, grad=grad, value_fn=loss
    )
    return (optax.apply_updates(l, updates), state), None

  (l, _), _ = jax.lax.scan(step, (l0, opt.init(l0)), None, length=steps)
  return l


def _random_problem(seed, c=6):
  rng = np.random.default_rng(seed)
  z = jnp.asarray(1.5 * rng.normal(size=c))
  a = jnp.asarray(rng.normal(size=c))
  return z, a


class ModulateLogitsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_worked(self):
    # z = [0, -1, -inf, 2], A = [1, 0.5, 10, -1], beta = 2. max A over the
    # candidates that count is 1 (the 10 sits on a -inf logit), so
    # z' = z + 2 (A - 1) = [0, -1 - 1, -inf (masked stays masked), 2 - 4]
    # = [0, -2, -inf, -2]; unshifted, z + 2 A = [2, 0, -inf, 0], the same
    # up to the constant 2. With mask [T, T, T, F] the last one is -inf
    # too, and max A is still 1.
    z = jnp.array([0.0, -1.0, -jnp.inf, 2.0])
    a = jnp.array([1.0, 0.5, 10.0, -1.0])
    fn = self.variant(up.modulate_logits)
    np.testing.assert_array_equal(fn(z, a, 2.0), [0.0, -2.0, -np.inf, -2.0])
    out = self.variant(lambda z, a, m: up.modulate_logits(z, a, 2.0, mask=m))(
        z, a, jnp.array([True, True, True, False])
    )
    np.testing.assert_array_equal(out, [0.0, -2.0, -np.inf, -np.inf])
    # A masked candidate's A does not set the shift: with candidate 0
    # masked, max A = 0.5 and z' = [-inf, -1, -inf, 2 - 3].
    out = up.modulate_logits(
        z, a, 2.0, mask=jnp.array([False, True, True, True])
    )
    np.testing.assert_array_equal(out, [-np.inf, -1.0, -np.inf, -1.0])

  def test_nan_raises_eagerly(self):
    z = jnp.array([0.0, jnp.nan, 1.0])
    with self.assertRaisesRegex(ValueError, r"NaN .*candidates \[1\]"):
      up.modulate_logits(z, jnp.zeros(3), 1.0)
    with self.assertRaisesRegex(ValueError, "NaN"):
      up.modulate_logits(jnp.zeros(3), jnp.array([0.0, 0.0, jnp.nan]), 1.0)
    # A NaN logit of a masked candidate is not an error.
    out = up.modulate_logits(z, jnp.zeros(3), 1.0, mask=jnp.array([1, 0, 1]))
    np.testing.assert_array_equal(out, [0.0, -np.inf, 1.0])

  def test_nan_under_jit_is_masked_and_flagged(self):
    z = jnp.array([0.0, jnp.nan, 1.0])
    a = jnp.array([1.0, 5.0, 0.0])

    @jax.jit
    def f(z, a):
      zp = up.modulate_logits(z, a, 1.0)
      return zp, up.softmax_policy(zp), up.nan_candidates(z, a, 1.0)

    zp, pi, bad = f(z, a)
    # max A over the non-NaN candidates is 1: z' = z + (A - 1).
    np.testing.assert_array_equal(zp, [0.0, -np.inf, 0.0])
    np.testing.assert_array_equal(pi, [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(bad, [False, True, False])
    self.assertFalse(np.any(np.isnan(pi)))

  def test_beta_zero_is_identity(self):
    z, a = _random_problem(0)
    np.testing.assert_array_equal(up.modulate_logits(z, a, 0.0), z)

  def test_large_beta_gives_argmax_of_a_on_support(self):
    # A's largest value (9) is at a masked candidate (mask) and the second
    # (8) at a -inf logit: the argmax among supported actions is index 1
    # (A = 3), whatever the LM's logits say.
    z = jnp.array([5.0, -4.0, 0.0, -jnp.inf, 1.0])
    a = jnp.array([0.1, 3.0, 9.0, 8.0, -2.0])
    mask = jnp.array([True, True, False, True, True])
    zp = jax.jit(up.modulate_logits)(z, a, 1e6, mask=mask)
    pi = up.softmax_policy(zp)
    self.assertFalse(np.any(np.isnan(pi)))
    np.testing.assert_allclose(pi, [0, 1, 0, 0, 0], atol=1e-6)
    self.assertEqual(int(jnp.argmax(zp)), 1)

  def test_constant_shift_of_a_changes_nothing(self):
    # z + beta (A + c) moves by beta * c everywhere, and softmax is
    # shift-invariant; z' = z + beta (A - max A) does not move at all.
    z, a = _random_problem(1)
    zp = up.modulate_logits(z, a, 1.7)
    zp_shift = up.modulate_logits(z, a + 3.0, 1.7)
    np.testing.assert_allclose(zp_shift, zp, atol=1e-5)
    np.testing.assert_allclose(
        zp - z, 1.7 * (a - jnp.max(a)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        up.softmax_policy(zp_shift), up.softmax_policy(zp), atol=1e-6
    )
    np.testing.assert_allclose(
        up.softmax_policy(zp), jax.nn.softmax(z + 1.7 * a), atol=1e-6
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_huge_beta_keeps_the_logits_float32(self):
    # beta_for_kl_budget returns its cap, 1e6, when A is constant on the
    # support. Unshifted, z + 1e6 * 0.5 = z + 5e5 in float32 rounds z to
    # multiples of 1/32 and pi drifted 2.1e-3 from pi_theta.
    z = jnp.array([0.1, -0.37, 1.234, -jnp.inf], jnp.float32)
    a = jnp.array([0.5, 0.5, 0.5, 7.0], jnp.float32)  # 7: on a -inf logit.

    def f(z, a):
      beta = up.beta_for_kl_budget(z, a, 0.1)
      zp = up.modulate_logits(z, a, beta)
      return beta, zp, up.softmax_policy(zp)

    beta, zp, pi = self.variant(f)(z, a)
    self.assertEqual(float(beta), 1e6)
    np.testing.assert_allclose(pi, up.softmax_policy(z), atol=1e-6)
    np.testing.assert_array_equal(zp, z)  # A - max A = 0: z exactly.
    # Non-constant A: the beta -> infinity limit, pi_theta restricted to
    # the argmax set {0, 1} of A and renormalised.
    a2 = jnp.array([0.5, 0.5, 0.2, 7.0], jnp.float32)
    pi2 = self.variant(
        lambda z, a: up.softmax_policy(up.modulate_logits(z, a, 1e6))
    )(z, a2)
    want = np.exp([0.1, -0.37]) / np.sum(np.exp([0.1, -0.37]))
    np.testing.assert_allclose(pi2, [*want, 0.0, 0.0], atol=1e-6)

  def test_softmax_policy_all_masked_is_zero(self):
    pi = up.softmax_policy(jnp.full((3,), -jnp.inf))
    np.testing.assert_array_equal(pi, 0.0)

  def test_vmapped_twin(self):
    rng = np.random.default_rng(2)
    z = jnp.asarray(rng.normal(size=(4, 5)))
    a = jnp.asarray(rng.normal(size=(4, 5)))
    beta = jnp.array([0.0, 0.5, 1.0, 7.0])
    out = jax.vmap(up.modulate_logits)(z, a, beta)
    for i in range(4):
      np.testing.assert_allclose(
          out[i], up.modulate_logits(z[i], a[i], beta[i]), rtol=1e-6
      )


class KlObjectiveTest(parameterized.TestCase):

  def test_kl_hand_worked(self):
    # KL([.5, .5, 0] || [.25, .25, .5]) = 2 * .5 * log(.5 / .25) = log 2.
    kl = up.kl_divergence(
        jnp.array([0.5, 0.5, 0.0]), jnp.array([0.25, 0.25, 0.5])
    )
    np.testing.assert_allclose(kl, np.log(2.0), rtol=1e-6)
    # J = E_pi[A] - KL / beta with A = [1, 0, 7 (ignored: pi = 0)], beta = 2:
    # 0.5 - log(2) / 2 = 0.153426.
    j = up.kl_regularised_objective(
        jnp.array([0.5, 0.5, 0.0]),
        jnp.array([0.25, 0.25, 0.5]),
        jnp.array([1.0, 0.0, 7.0]),
        2.0,
    )
    np.testing.assert_allclose(j, 0.5 - np.log(2.0) / 2, rtol=1e-6)

  @parameterized.parameters((0, 0.3), (1, 1.0), (2, 4.0), (3, 10.0))
  def test_closed_form_is_the_maximiser(self, seed, beta):
    # Independent solver: optax L-BFGS over free logits on J(softmax(l)),
    # from uniform logits, float64.
    with jax.enable_x64(True):
      z, a = _random_problem(seed)
      pi_theta = jax.nn.softmax(z)
      objective = lambda l: up.kl_regularised_objective(
          jax.nn.softmax(l), pi_theta, a, beta
      )
      l = jax.jit(lambda l0: _lbfgs_argmax(objective, l0, steps=100))(
          jnp.zeros_like(z)
      )
      closed = up.softmax_policy(up.modulate_logits(z, a, beta))
      np.testing.assert_allclose(jax.nn.softmax(l), closed, atol=1e-5)

      # No distribution on the simplex does better: random mixtures with
      # Dirichlet points and random logit perturbations.
      best = up.kl_regularised_objective(closed, pi_theta, a, beta)
      key = jax.random.key(seed)
      k1, k2, k3 = jax.random.split(key, 3)
      q = jax.random.dirichlet(k1, jnp.ones_like(z), (500,))
      t = jax.random.uniform(k2, (500, 1), minval=1e-3)
      mixtures = (1 - t) * closed + t * q
      noisy = jax.nn.softmax(
          jnp.log(closed) + 0.1 * jax.random.normal(k3, (500, z.shape[0]))
      )
      for pis in (mixtures, noisy, q):
        js = jax.vmap(
            lambda p: up.kl_regularised_objective(p, pi_theta, a, beta)
        )(pis)
        self.assertLessEqual(float(jnp.max(js)), float(best) + 1e-12)


class KlBudgetTest(parameterized.TestCase):

  @parameterized.parameters((0, 0.05), (1, 0.5), (2, 0.9))
  def test_budget_is_met_and_solves_the_constrained_problem(self, seed, frac):
    with jax.enable_x64(True):
      z, a = _random_problem(seed)
      pi_theta = jax.nn.softmax(z)
      eps = frac * float(up.max_kl(z, a))  # a reachable budget
      beta = jax.jit(up.beta_for_kl_budget)(z, a, eps)
      pi = up.softmax_policy(up.modulate_logits(z, a, beta))
      np.testing.assert_allclose(up.kl_divergence(pi, pi_theta), eps, atol=1e-6)

      # Independent solver: augmented Lagrangian for max E_pi[A] s.t.
      # KL(pi || pi_theta) <= eps, Adam on free logits (inner), multiplier
      # update lam <- max(0, lam + rho * (KL - eps)) (outer).
      rho = 50.0

      def solve(l0):
        def outer(carry, _):
          l, lam = carry

          def objective(l):
            p = jax.nn.softmax(l)
            g = up.kl_divergence(p, pi_theta) - eps
            return (
                jnp.sum(p * a) - rho / 2 * jnp.maximum(0.0, g + lam / rho) ** 2
            )

          l = _adam_argmax(objective, l, steps=1500, lr=0.05)
          g = up.kl_divergence(jax.nn.softmax(l), pi_theta) - eps
          return (l, jnp.maximum(0.0, lam + rho * g)), None

        (l, lam), _ = jax.lax.scan(outer, (l0, 0.0), None, length=12)
        return l, lam

      l, lam = jax.jit(solve)(z)
      np.testing.assert_allclose(jax.nn.softmax(l), pi, atol=1e-5)
      # The multiplier is 1 / beta (stationarity: A - lam log(pi/pi_theta)).
      np.testing.assert_allclose(1.0 / lam, beta, rtol=1e-3)
      # Any feasible mixture pi_t = (1-t) pi_theta + t q ... scores no more.
      q = jax.random.dirichlet(jax.random.key(seed), jnp.ones_like(z), (400,))
      for t in (0.05, 0.2, 0.5):
        mix = (1 - t) * pi_theta + t * q
        kls = jax.vmap(lambda p: up.kl_divergence(p, pi_theta))(mix)
        values = mix @ a
        feasible = kls <= eps
        if np.any(feasible):
          self.assertLessEqual(
              float(jnp.max(jnp.where(feasible, values, -jnp.inf))),
              float(pi @ a) + 1e-12,
          )

  def test_edge_cases(self):
    # z = log [.5, .25, .25], A = [0, 1, 1]: the argmax set {1, 2} has
    # pi_theta mass .5, so max KL = -log .5 = log 2.
    z = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    a = jnp.array([0.0, 1.0, 1.0])
    np.testing.assert_allclose(up.max_kl(z, a), np.log(2.0), rtol=1e-6)
    self.assertEqual(float(up.beta_for_kl_budget(z, a, 0.0)), 0.0)
    self.assertEqual(float(up.beta_for_kl_budget(z, a, -1.0)), 0.0)
    self.assertEqual(float(up.beta_for_kl_budget(z, a, 0.7)), 1e6)
    self.assertEqual(
        float(up.beta_for_kl_budget(z, a, 0.7, beta_max=50.0)), 50.0
    )
    # Constant A: max KL 0, any beta -> pi_theta; beta_max is returned.
    self.assertEqual(float(up.beta_for_kl_budget(z, jnp.ones(3), 0.1)), 1e6)
    # Masking: with candidate 1 masked the argmax set is {2}, mass
    # .25 / .75 = 1/3 of the support, so max KL = log 3.
    mask = jnp.array([True, False, True])
    np.testing.assert_allclose(
        up.max_kl(z, a, mask=mask), np.log(3.0), rtol=1e-6
    )
    beta = up.beta_for_kl_budget(z, a, 0.5, mask=mask)
    pi = up.softmax_policy(up.modulate_logits(z, a, beta, mask=mask))
    self.assertEqual(float(pi[1]), 0.0)
    pt = up.softmax_policy(jnp.where(mask, z, -jnp.inf))
    np.testing.assert_allclose(up.kl_divergence(pi, pt), 0.5, atol=1e-5)

  def test_kl_increases_with_beta(self):
    z, a = _random_problem(3)
    pt = jax.nn.softmax(z)
    betas = jnp.geomspace(1e-3, 1e3, 50)
    kls = jax.vmap(lambda b: up.kl_divergence(jax.nn.softmax(z + b * a), pt))(
        betas
    )
    self.assertTrue(np.all(np.diff(np.asarray(kls)) >= -1e-6))

  def test_vmapped_twin(self):
    z = jnp.stack([_random_problem(s)[0] for s in range(3)])
    a = jnp.stack([_random_problem(s)[1] for s in range(3)])
    eps = jnp.array([0.01, 0.1, 0.4])
    batched = jax.jit(jax.vmap(up.beta_for_kl_budget))(z, a, eps)
    for i in range(3):
      np.testing.assert_allclose(
          batched[i], up.beta_for_kl_budget(z[i], a[i], eps[i]), rtol=1e-5
      )


class ReferenceRuleTest(parameterized.TestCase):

  @parameterized.parameters(
      # w = min(1 + e / 100, 1.5)
      (0, False, 1.0),
      (20, False, 1.2),
      (50, False, 1.5),
      (120, False, 1.5),
      (20, True, 1.0),
  )
  def test_weight(self, episodes, web, want):
    self.assertAlmostEqual(
        float(up.reference_weight(episodes, web=web)), want, places=6
    )

  def test_choice_hand_worked(self):
    # p = [.5, .3, .2], A_hat = [-1, 1, .2], w = 1.2:
    # scores = [.5 - 1.2, .3 + 1.2, .2 + .24] = [-.7, 1.5, .44] -> 1.
    # With 1 masked -> 2 (.44 > -.7). All masked -> -1.
    p = jnp.array([0.5, 0.3, 0.2])
    a_hat = jnp.array([-1.0, 1.0, 0.2])
    choose = jax.jit(up.reference_choice)
    self.assertEqual(int(choose(p, a_hat, 1.2)), 1)
    self.assertEqual(
        int(choose(p, a_hat, 1.2, mask=jnp.array([True, False, True]))), 2
    )
    self.assertEqual(int(choose(p, a_hat, 1.2, mask=jnp.zeros(3, bool))), -1)
    # w = 0 leaves the LM's choice.
    self.assertEqual(int(choose(p, a_hat, 0.0)), 0)
    # A NaN score is never chosen.
    self.assertEqual(int(choose(p.at[1].set(jnp.nan), a_hat, 1.2)), 2)


if __name__ == "__main__":
  absltest.main()
