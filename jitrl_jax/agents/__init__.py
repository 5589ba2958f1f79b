"""Text-game agents: the frozen LM and the JitRL policy, one room each.

* `lm`: the LM adapter (load, tokenise, chat template, generate, score).
* `prompts`: the prompt text.
* `actions`: action ids and the device table of memory actions' tokens.
* `batching`: host-side padding to `models.scoring`'s buckets.
* `decision`: the one pure, jitted decision function.
* `generate`: the generating agents' decision (the LM writes the command,
  plainly or tilted by memory).
* `commands`: what the LM wrote -> the game's command, and their step logs.
* `text_game`: `make_agent`, the host loop around the decision.
"""

from jitrl_jax.agents.actions import ActionTable
from jitrl_jax.agents.actions import action_id
from jitrl_jax.agents.actions import normalise_action
from jitrl_jax.agents.batching import DecisionInput
from jitrl_jax.agents.decision import DecisionOutput
from jitrl_jax.agents.generate import GenerateDecision
from jitrl_jax.agents.generate import GenerateInput
from jitrl_jax.agents.lm import Generator
from jitrl_jax.agents.lm import LanguageModel
from jitrl_jax.agents.lm import from_llama
from jitrl_jax.agents.lm import load_language_model
from jitrl_jax.agents.lm import render_plain
from jitrl_jax.agents.lm import scripted_language_model
from jitrl_jax.agents.prompts import GameObservation
from jitrl_jax.agents.prompts import SYSTEM_PROMPT
from jitrl_jax.agents.prompts import build_user_message
from jitrl_jax.agents.prompts import format_experiences
from jitrl_jax.agents.text_game import AGENT_NAMES
from jitrl_jax.agents.text_game import AgentCarry
from jitrl_jax.agents.text_game import AgentState
from jitrl_jax.agents.text_game import Choice
from jitrl_jax.agents.text_game import GENERATING_AGENT_NAMES
from jitrl_jax.agents.text_game import NoGeneratorError
from jitrl_jax.agents.text_game import NonFiniteLogitsError
from jitrl_jax.agents.text_game import TextGameAgent
from jitrl_jax.agents.text_game import Trajectory
from jitrl_jax.agents.text_game import UnknownAgentError
from jitrl_jax.agents.text_game import check_agent_name
from jitrl_jax.agents.text_game import make_agent
from jitrl_jax.agents.text_game import remember

__all__ = [
    "AGENT_NAMES",
    "ActionTable",
    "AgentCarry",
    "AgentState",
    "Choice",
    "DecisionInput",
    "DecisionOutput",
    "GENERATING_AGENT_NAMES",
    "GameObservation",
    "GenerateDecision",
    "GenerateInput",
    "Generator",
    "LanguageModel",
    "NoGeneratorError",
    "NonFiniteLogitsError",
    "SYSTEM_PROMPT",
    "TextGameAgent",
    "Trajectory",
    "UnknownAgentError",
    "action_id",
    "build_user_message",
    "check_agent_name",
    "format_experiences",
    "from_llama",
    "load_language_model",
    "make_agent",
    "normalise_action",
    "remember",
    "render_plain",
    "scripted_language_model",
]
