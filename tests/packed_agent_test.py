"""The agents' packed layout on the real LM: same decision, few compiles.

`Settings.scoring_layout = "packed"` (the default) scores the candidates of
`TextGameAgent.pack`'s inputs: the prompt after its head (encoded once per
run), the candidates' real tokens end to end, memory actions packed on the
device. On SmolLM2 it must give the logits of the padded layout (1e-4) and
the same choice, and a whole Detective episode must compile the decision
only a few times.
"""

import json
import os
import tempfile

from absl.testing import absltest
import jax
import numpy as np

from jitrl_jax import agents as agent_lib
from jitrl_jax.agents import batching
from tests import roms

_ROOM = (
    "Kitchen. You are in a small kitchen. A fridge stands by the door; on "
    "the table there is a red apple and an old newspaper."
)
# A Detective episode (30 steps) compiles the packed decision at most this
# often: the layouts (N, K) its prompts and candidates need. Measured: 3.
MAX_COMPILES_PER_EPISODE = 4


def _obs(actions, *, observation=_ROOM, step=0):
  return agent_lib.GameObservation(
      observation=observation,
      current=_ROOM,
      history="path: kitchen",
      task="",
      valid_actions=actions,
      recent=(),
      step=step,
  )


class PackedAgentTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lm = agent_lib.load_language_model()

  def test_prompt_head_is_the_system_turn(self):
    head = batching.prompt_prefix(self.lm)
    text = self.lm.render_prompt(agent_lib.SYSTEM_PROMPT, "Now: x")
    self.assertGreater(len(head), 20)
    self.assertEqual(self.lm.encode(text)[: len(head)], head)
    self.assertIn(agent_lib.SYSTEM_PROMPT[-20:], self.lm.generator.decode(head))

  def test_packed_decision_equals_padded(self):
    agent = agent_lib.make_agent("jitrl", self.lm, beta=2.0, history_turns=0)
    carry = agent_lib.remember(
        agent,
        [
            (_ROOM, "path: kitchen", "open the fridge", 1.0),
            (_ROOM, "path: kitchen", "read newspaper", 0.5),
            (_ROOM, "path: kitchen", "go north", -1.0),
        ],
    )
    games = [
        _obs(["take apple", "open fridge", "east", "read the old newspaper"]),
        _obs(["west"], observation=_ROOM + " " + "It is quiet. " * 40),
    ]
    longest = int(np.max(np.asarray(carry.table.lengths)))
    inputs = agent.prepare(games, min_tokens=longest)
    packed, extras = agent.pack(inputs, min_tokens=longest)
    self.assertEqual(set(extras), {"prefix", "layout"})
    head = len(batching.prompt_prefix(self.lm))
    np.testing.assert_array_equal(
        packed.prompt_lengths, inputs.prompt_lengths - head
    )
    n, _ = extras["layout"]
    self.assertLess(n, inputs.prompt_ids.shape[1] + 36 * 8)
    key = jax.random.key(3)
    args = (self.lm.params, carry.memory, carry.table)
    pad = agent.decide(*args, inputs, key, carry.state.episodes_done)
    pk = agent.decide(*args, packed, key, carry.state.episodes_done, **extras)
    np.testing.assert_array_equal(pad.candidate_mask, pk.candidate_mask)
    # Memory actions joined (open the fridge, read newspaper).
    self.assertGreaterEqual(int(np.sum(pk.candidate_mask[0, 32:])), 1)
    finite = np.asarray(pad.candidate_mask)
    np.testing.assert_allclose(
        np.asarray(pk.logits)[finite],
        np.asarray(pad.logits)[finite],
        atol=1e-4,
        rtol=1e-5,
    )
    np.testing.assert_allclose(pk.pi, pad.pi, atol=1e-5)
    np.testing.assert_array_equal(pk.index, pad.index)

  def test_detective_episode_compiles_a_few_times(self):
    from experiments import episodes  # pylint: disable=g-import-not-at-top
    from experiments.configs import text_game  # pylint: disable=g-import-not-at-top

    roms.require_roms(self, "detective")
    cfg = text_game.get_config("detective")
    cfg.episodes, cfg.steps = 1, 30
    cfg.agents = ("jitrl",)
    self.assertEqual(cfg.agent.scoring_layout, "packed")
    with tempfile.TemporaryDirectory() as run_dir:
      episodes.run_experiment(cfg, run_dir, lm=self.lm)
      with open(os.path.join(run_dir, "jitrl", "results.json")) as f:
        results = json.load(f)
    self.assertBetween(results["decisions"], 1, 30)
    self.assertBetween(results["compiles"], 1, MAX_COMPILES_PER_EPISODE)


if __name__ == "__main__":
  absltest.main()
