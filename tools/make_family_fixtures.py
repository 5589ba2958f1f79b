"""Writes tests/testdata/families/: tiny random checkpoints and torch logits.

A development script, run by hand in an environment with torch (the library
and its tests never import it):

  python3 -m venv /tmp/devenv
  /tmp/devenv/bin/pip install torch transformers safetensors numpy
  /tmp/devenv/bin/python tools/make_family_fixtures.py

For each family (Llama with llama3 and with linear rope scaling, Qwen2,
Qwen3, Gemma 3, Mistral) it builds a tiny model with transformers' own torch
implementation from a seeded random config (hidden 32, 2-3 layers, vocabulary
256), draws every parameter at random (norm scales and biases too, so each
one matters), rounds them to bfloat16 and saves the Hugging Face directory
(``config.json`` + ``model.safetensors`` in bfloat16: the dtype of real
checkpoints). It then runs the float32 torch model (eager attention) on a
random 40-token prompt, longer than the sliding windows, and writes
``expected.npz``: the prompt, the logits at every prompt position, and 16
greedy tokens (full recomputation each step, no cache) with the smallest
top-1 / top-2 logit margin met on the way (seeds are chosen so that it is
far above float32 noise). Each directory stays near 100 kB.
"""

import argparse
import os

import numpy as np

VOCAB = 256
PROMPT_LEN = 40
NEW_TOKENS = 16
MIN_MARGIN = 0.02
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    rms_norm_eps=1e-5,
    max_position_embeddings=256,
)


def family_configs():
  """name -> (transformers config class name, kwargs)."""
  return {
      # Llama 3.1 / 3.2 style: head_dim 16 gives wavelengths below, inside
      # and above the [8, 32] band of a 32-token "original" context.
      "llama3_rope": (
          "LlamaConfig",
          dict(
              COMMON,
              head_dim=16,
              tie_word_embeddings=True,
              rope_parameters=dict(
                  rope_type="llama3",
                  rope_theta=10000.0,
                  factor=8.0,
                  low_freq_factor=1.0,
                  high_freq_factor=4.0,
                  original_max_position_embeddings=32,
              ),
          ),
      ),
      "llama_linear_rope": (
          "LlamaConfig",
          dict(
              COMMON,
              tie_word_embeddings=False,
              attention_bias=True,
              rope_parameters=dict(
                  rope_type="linear", rope_theta=500.0, factor=4.0
              ),
          ),
      ),
      "qwen2": (
          "Qwen2Config",
          dict(
              COMMON,
              tie_word_embeddings=False,
              rope_parameters=dict(rope_type="default", rope_theta=1000.0),
          ),
      ),
      # head_dim 16 != hidden / heads = 8: read from the config.
      "qwen3": (
          "Qwen3Config",
          dict(
              COMMON,
              head_dim=16,
              tie_word_embeddings=True,
              rope_parameters=dict(rope_type="default", rope_theta=1000.0),
          ),
      ),
      "gemma3": (
          "Gemma3TextConfig",
          dict(
              COMMON,
              head_dim=16,
              num_hidden_layers=3,
              layer_types=[
                  "sliding_attention",
                  "full_attention",
                  "sliding_attention",
              ],
              sliding_window=8,
              query_pre_attn_scalar=24,
              final_logit_softcapping=30.0,
              rms_norm_eps=1e-6,
              tie_word_embeddings=True,
              hidden_activation="gelu_pytorch_tanh",
              rope_parameters={
                  "full_attention": dict(
                      rope_type="linear", rope_theta=100000.0, factor=4.0
                  ),
                  "sliding_attention": dict(
                      rope_type="default", rope_theta=100.0
                  ),
              },
          ),
      ),
      "mistral": (
          "MistralConfig",
          dict(
              COMMON,
              sliding_window=8,
              tie_word_embeddings=False,
              rope_parameters=dict(rope_type="default", rope_theta=1000.0),
          ),
      ),
  }


def randomize(model, torch, seed: int, gemma: bool) -> None:
  """Draws every parameter; values are exactly representable in bf16."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "norm" in name:  # Gemma scales by 1 + w, the others by w
        value = (0.0 if gemma else 1.0) + 0.3 * noise
      elif p.ndim == 1:  # biases
        value = 0.3 * noise
      elif "embed" in name or "lm_head" in name:
        value = 0.7 * noise
      else:  # [out, in]
        value = noise / np.sqrt(p.shape[1])
      p.copy_(value.to(torch.bfloat16).to(torch.float32))


def greedy(model, torch, ids):
  """16 greedy tokens by full recomputation; the smallest top-2 margin."""
  ids = list(ids)
  out, margin = [], np.inf
  with torch.no_grad():
    for _ in range(NEW_TOKENS):
      logits = model(torch.tensor([ids])).logits[0, -1].numpy()
      top2 = np.sort(logits)[-2:]
      margin = min(margin, float(top2[1] - top2[0]))
      nxt = int(np.argmax(logits))
      out.append(nxt)
      ids.append(nxt)
  return np.array(out, np.int32), margin


def write_family(name, cls_name, kwargs, out_dir, torch, transformers):
  """Saves one family's directory and expected.npz; returns a summary."""
  cls = getattr(transformers, cls_name)
  config = cls(**kwargs)
  directory = os.path.join(out_dir, name)
  os.makedirs(directory, exist_ok=True)
  for seed in range(100):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        config, attn_implementation="eager", dtype=torch.float32
    )
    model.eval()
    randomize(model, torch, seed, gemma=cls_name.startswith("Gemma"))
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, VOCAB, PROMPT_LEN).astype(np.int32)
    with torch.no_grad():
      logits = model(torch.tensor([prompt.tolist()])).logits[0].numpy()
    tokens, margin = greedy(model, torch, prompt)
    last = np.sort(logits[-1])
    if margin > MIN_MARGIN and last[-5] - last[-6] > MIN_MARGIN:
      break
  model.to(torch.bfloat16).save_pretrained(directory)
  for extra in ("generation_config.json",):
    path = os.path.join(directory, extra)
    if os.path.exists(path):
      os.remove(path)
  np.savez_compressed(
      os.path.join(directory, "expected.npz"),
      prompt=prompt,
      logits=logits.astype(np.float32),
      greedy=tokens,
      greedy_margin=np.float32(margin),
      seed=np.int32(seed),
      source=np.array(
          f"transformers {transformers.__version__} {cls_name} + torch "
          f"{torch.__version__}, float32 eager attention, bf16 weights"
      ),
  )
  size = sum(
      os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
  )
  return f"{name}: seed {seed}, greedy margin {margin:.3f}, {size} B"


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument(
      "--out",
      default=os.path.join(
          os.path.dirname(__file__), "..", "tests", "testdata", "families"
      ),
  )
  parser.add_argument("--only", nargs="*", help="family names to write")
  args = parser.parse_args()

  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(1)
  for name, (cls_name, kwargs) in family_configs().items():
    if args.only and name not in args.only:
      continue
    print(write_family(name, cls_name, kwargs, args.out, torch, transformers))


if __name__ == "__main__":
  main()
