"""Writes tests/testdata/reference_logits.npz from the reference implementation.

A development script, run by hand (it needs torch, which the library never
imports):

  .venv/bin/python -m pip install torch   # CPU wheel
  .venv/bin/python tools/make_reference_logits.py

The reference is transformers' own GGUF loader and torch Llama:
``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` on the embedded
SmolLM2-135M-Instruct.Q4_1.gguf, in float32. For each prompt it stores the
token ids, the last-position logits at the reference top-100 ids, the top-20
ids, and summary statistics of the full [V] logits (max, mean, std,
logsumexp). The fixture stays far below 500 kB.
"""

import argparse
import os

import numpy as np

PROMPTS = (
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "You are in a dark room. Exits lead north and east. A brass lantern "
    "lies on the floor.\n> ",
)
CHAT_PROMPT = "What is the capital of France? Answer in one word."
TOP_STORED = 100
TOP_IDS = 20


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument(
      "--out",
      default=os.path.join(
          os.path.dirname(__file__),
          "..",
          "tests",
          "testdata",
          "reference_logits.npz",
      ),
  )
  args = parser.parse_args()

  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  from jitrl_jax.models import loading  # pylint: disable=g-import-not-at-top

  path = loading.default_gguf_path()
  directory, name = os.path.split(path)
  tokenizer = transformers.AutoTokenizer.from_pretrained(
      directory, gguf_file=name
  )
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=name, dtype=torch.float32
  )
  model.eval()

  texts = list(PROMPTS)
  ids_list = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
  chat_text = tokenizer.apply_chat_template(
      [{"role": "user", "content": CHAT_PROMPT}],
      tokenize=False,
      add_generation_prompt=True,
  )
  texts.append(chat_text)
  ids_list.append(tokenizer.encode(chat_text, add_special_tokens=False))

  max_len = max(len(ids) for ids in ids_list)
  n = len(ids_list)
  token_ids = np.full((n, max_len), -1, np.int32)
  lengths = np.zeros((n,), np.int32)
  top_ids = np.zeros((n, TOP_STORED), np.int32)
  top_logits = np.zeros((n, TOP_STORED), np.float32)
  stats = np.zeros((n, 4), np.float32)
  with torch.no_grad():
    for i, ids in enumerate(ids_list):
      out = model(torch.tensor([ids]))
      logits = out.logits[0, -1].float().numpy()
      order = np.argsort(-logits, kind="stable")[:TOP_STORED]
      token_ids[i, : len(ids)] = ids
      lengths[i] = len(ids)
      top_ids[i] = order
      top_logits[i] = logits[order]
      m = logits.max()
      stats[i] = (
          m,
          logits.mean(),
          logits.std(),
          m + np.log(np.exp(logits - m).sum()),
      )
      print(
          i,
          repr(texts[i][:40]),
          tokenizer.convert_ids_to_tokens(order[:5].tolist()),
      )
  np.savez_compressed(
      args.out,
      texts=np.array(texts),
      token_ids=token_ids,
      lengths=lengths,
      top_ids=top_ids,
      top_logits=top_logits,
      stats=stats,
      stats_names=np.array(["max", "mean", "std", "logsumexp"]),
      top5_count=np.int32(5),
      source=np.array(
          f"transformers {transformers.__version__} + torch "
          f"{torch.__version__} float32, gguf {name}"
      ),
  )
  print("wrote", os.path.abspath(args.out), os.path.getsize(args.out), "B")


if __name__ == "__main__":
  main()
