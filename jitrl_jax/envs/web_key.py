"""The authors' web state key: normalised URL, action signature, task text.

For web tasks the JitRL authors key a state by three texts (docs/method.md
section 9): the page's URL, normalised so that pages of the same kind
match; an action signature (what the page lets the agent do); and the task
text. Retrieval keeps only entries with the same normalised URL and a task
Jaccard of at least 0.27 (a hard filter), and scores the survivors
0.7 * J(signature) + 0.3 * J(task). In this project that is three views with
weights and floors (`config.Settings.view_floors`):

  view      text                          weight  floor
  history   normalise_url(page URL)       0.0     1.0  (the same URL)
  current   action_signature(candidates)  0.7     0.0
  task      the utterance                 0.3     0.27

`MiniWoBEnv(state_key="authors")` gives these texts as its `view_texts()`
(the LM's prompt still reads the element listing); `AUTHORS_SETTINGS` are
the matching agent settings.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence
import urllib.parse

# Agent settings of the authors' key (the views above, word unigrams).
AUTHORS_SETTINGS = {
    "view_weights": (0.0, 0.7, 0.3),
    "view_floors": (1.0, 0.0, 0.27),
    "view_ngrams": (1, 1, 1),
    "view_sizes": (16, 192, 64),
}
# A path segment of hex digits and dashes this long or longer is a hash or
# an opaque id (session tokens, UUIDs, commit ids).
_HASH = re.compile(r"^(?=.*\d)[0-9a-fA-F-]{12,}$")
_CUT_AT = "filter"  # the path is cut at this segment (search filters)


def normalise_url(url: str, sites: Mapping[int, str] | None = None) -> str:
  """A URL with what varies between visits of the same kind of page removed.

  The port becomes the site's name where `sites` maps it (self-hosted
  sites live on ports of one host), the query and fragment are dropped, the
  path is cut at a `filter` segment, all-digit segments become `ID` and
  hash-like ones `HASH`. For a local file (MiniWoB's pages) only the file's
  name is kept: the folder is where the package is installed.

  Args:
    url: the page's URL.
    sites: port -> site name.

  Returns:
    "host/segment/...", e.g. "shopping/catalog/product/ID".
  """
  parts = urllib.parse.urlsplit(url.strip())
  segments = [s for s in parts.path.split("/") if s]
  if parts.scheme == "file":
    return "file/" + (segments[-1] if segments else "")
  host = parts.hostname or ""
  if parts.port is not None:
    host = (sites or {}).get(parts.port, f"{host}:{parts.port}")
  out = [host]
  for segment in segments:
    if segment == _CUT_AT:
      break
    if segment.isdigit():
      out.append("ID")
    elif _HASH.match(segment):
      out.append("HASH")
    else:
      out.append(segment)
  return "/".join(out)


def action_signature(actions: Sequence[str]) -> str:
  """What a page lets the agent do: its distinct candidate actions, sorted.

  Each action names its verb, the element's role and its text (`click "Ok"
  (button)`), so two instances of a page that offer the same kinds of
  action share most of the signature's words.
  """
  return " ; ".join(sorted({" ".join(a.split()) for a in actions if a}))
