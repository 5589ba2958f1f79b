"""Filling a text-game agent's memory in tests: one single-step game each."""

from jitrl_jax import agents as agent_lib


def with_memory(agent, entries, carry=None):
  """Observes one single-step game per (current, history, action, return).

  Args:
    agent: a `TextGameAgent`.
    entries: (current view text, history view text, action, return) tuples.
    carry: the `AgentCarry` to add to (default: the agent's empty one).

  Returns:
    The new `AgentCarry`.
  """
  trajs = [
      agent_lib.Trajectory(
          views=[agent.state_views(current, history, "")],
          actions=[action],
          rewards=[reward],
          task_id=0,
          episode_id=i,
      )
      for i, (current, history, action, reward) in enumerate(entries)
  ]
  return agent.observe(carry or agent.init(), trajs)
