"""Filling a text-game agent's memory in tests: one single-step game each."""

from jitrl_jax.agents import text_game

# (agent, [(current, history, action, return)], carry=None) -> AgentCarry.
with_memory = text_game.remember
