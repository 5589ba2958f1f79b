"""jitrl-jax: JAX-native reference implementation of JitRL."""

__version__ = "0.1.0"
