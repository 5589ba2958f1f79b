"""Text-game environments for JitRL agents (host side, plain Python).

`make_env("jericho:zork1")`, `make_env("twx:twc")`: see `base` for the
`TextEnv` protocol and the state views. The adapters' modules import their
games' packages only when an environment is made.
"""

from jitrl_jax.envs.base import EnvironmentUnavailableError
from jitrl_jax.envs.base import EpisodeHistory
from jitrl_jax.envs.base import FALLBACK_ACTIONS
from jitrl_jax.envs.base import make_env
from jitrl_jax.envs.base import register_env
from jitrl_jax.envs.base import StepResult
from jitrl_jax.envs.base import TextEnv
from jitrl_jax.envs.base import UnknownGameError
from jitrl_jax.envs.base import ViewTexts

__all__ = [
    "EnvironmentUnavailableError",
    "EpisodeHistory",
    "FALLBACK_ACTIONS",
    "make_env",
    "register_env",
    "StepResult",
    "TextEnv",
    "UnknownGameError",
    "ViewTexts",
]
