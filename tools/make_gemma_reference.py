"""Writes tests/testdata/gemma3_270m_reference.npz with transformers + torch.

A dev script (torch is never imported by the library): the reference for
``tests/gemma_gguf_test.py``. It loads the Gemma 3 270M Q4_K_M GGUF (assembled
by ``jitrl_jax.models.gemma_gguf.default_gemma_path``) with transformers'
own GGUF loader into its PyTorch Gemma 3 model, in float32 with eager
attention, and stores for each prompt:

* ``ids_<i>``: the prompt's token ids, from ``spm_encode`` below (a plain
  loop of llama.cpp's SentencePiece algorithm, BOS added: a base model, no
  chat template). transformers' own GGUF tokenizer is not used: it builds a
  Unigram model from Gemma's BPE scores and splits words into characters;
* ``top_ids_<i>``, ``top_logits_<i>``: the 20 largest last-position logits;
* ``greedy_<i>``: 16 greedy continuation tokens.

Usage: .venv/bin/python tools/make_gemma_reference.py
"""

import os
import time

import gguf
import numpy as np
import torch
import transformers

from jitrl_jax.models import gemma_gguf

OUT = os.path.join(
    os.path.dirname(__file__),
    "..",
    "tests",
    "testdata",
    "gemma3_270m_reference.npz",
)
SHORT = "The capital of France is"
# Longer than the 512-token sliding window, so local layers mask.
LONG = (
    " ".join(
        f"Day {i}: the farmer counted {3 * i + 1} sheep and {i % 7 + 2} cows."
        for i in range(1, 46)
    )
    + " Day 46: the farmer counted"
)
PROMPTS = (SHORT, LONG)


def spm_encode(text, tokens, scores):
  """llama.cpp's SPM tokenization, naively: merge the best-scoring pair.

  Spaces become "▁" (no prefix space); repeatedly, the adjacent pair whose
  concatenation is a vocabulary token of highest score (leftmost on ties)
  is merged; leftover pieces fall back to their UTF-8 bytes ``<0xXX>``.
  No special or user-defined tokens (the prompts have none).
  """
  ids = {t: i for i, t in enumerate(tokens)}
  syms = list(text.replace(" ", "\u2581"))
  while True:
    best, at = None, -1
    for j in range(len(syms) - 1):
      i = ids.get(syms[j] + syms[j + 1])
      if i is not None and (best is None or scores[i] > best):
        best, at = scores[i], j
    if at < 0:
      break
    syms[at : at + 2] = [syms[at] + syms[at + 1]]
  out = [2]  # <bos>
  for s in syms:
    if s in ids:
      out.append(ids[s])
    else:
      out.extend(ids[f"<0x{b:02X}>"] for b in s.encode("utf-8"))
  return out


def main():
  torch.set_num_threads(1)
  path = gemma_gguf.default_gemma_path()
  folder, name = os.path.split(path)
  t = time.time()
  reader = gguf.GGUFReader(path)
  tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
  scores = list(reader.fields["tokenizer.ggml.scores"].contents())
  model = transformers.AutoModelForCausalLM.from_pretrained(
      folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
  ).eval()
  print(f"loaded in {time.time() - t:.1f}s")
  print(model.config)
  out = {}
  for i, prompt in enumerate(PROMPTS):
    ids = torch.tensor([spm_encode(prompt, tokens, scores)])
    print(i, ids.shape, ids[0, :8].tolist())
    t = time.time()
    with torch.no_grad():
      logits = model(ids).logits[0, -1].float().numpy()
      gen = model.generate(
          ids, max_new_tokens=16, do_sample=False, top_k=None, top_p=None
      )[0, ids.shape[1] :].numpy()
    print(f"prompt {i}: {time.time() - t:.1f}s", [tokens[i] for i in gen])
    top = np.argsort(-logits)[:20]
    out[f"ids_{i}"] = ids[0].numpy().astype(np.int32)
    out[f"top_ids_{i}"] = top.astype(np.int32)
    out[f"top_logits_{i}"] = logits[top].astype(np.float32)
    out[f"greedy_{i}"] = gen.astype(np.int32)
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  np.savez_compressed(OUT, **out)
  print("wrote", os.path.abspath(OUT))


if __name__ == "__main__":
  main()
