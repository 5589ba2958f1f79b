"""MiniWoB++ pages as text: the element listing and the action grammar.

A MiniWoB++ page reaches Python as the tree that its `core.getDOMInfo()`
returns (nested dicts: `tag`, `ref`, `text` for leaves, `value`, `id`,
`focused`, `children`). This module turns that tree into `Element`s and
names each one by rule, so that the agent reads and writes the page as text:

  element := ["<name>" ] "(" <role> [" #" <id>] ")" [" [" <k> "]"]
  action  := "click " element
           | "type \"" <text> "\" into " element
           | "press " <key>
           | element            (read as "click " element)

The role is the element's tag as MiniWoB reports it, lower-cased ("button",
"input_text", "span"), the name is its text (or, for an input, its label),
the id its HTML id (written only for an element without a name), and `[k]`
tells apart the k-th element (k >= 2, page
order) that would otherwise have the same name. MiniWoB's own element ref
numbers never appear in the text, so that `click "Ok" (button)` means the
same thing on every instance of a task. `parse_action` maps a text back to
the element it names on the current page; `candidate_actions` enumerates
the actions worth offering.

Pure Python and no browser: the adapter (`miniwob.py`) fetches the tree.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, NamedTuple, Sequence

from jitrl_jax.envs import base

# Roles that are listed even without text of their own (their name is then
# their label, or nothing).
INTERACTIVE_ROLES = frozenset({"a", "button", "select", "textarea"})
# Roles that `type` accepts: the text inputs.
TEXT_INPUT_ROLES = frozenset(
    {
        "input_email",
        "input_number",
        "input_password",
        "input_search",
        "input_tel",
        "input_text",
        "input_url",
        "textarea",
    }
)
# `press <key>` -> MiniWoB's key syntax (see miniwob.constants).
KEYS = {
    "backspace": "<Backspace>",
    "delete": "<Delete>",
    "down": "<ArrowDown>",
    "end": "<End>",
    "enter": "<Enter>",
    "escape": "<Escape>",
    "home": "<Home>",
    "left": "<ArrowLeft>",
    "right": "<ArrowRight>",
    "space": "<Space>",
    "tab": "<Tab>",
    "up": "<ArrowUp>",
}
# Names longer than this are cut (the cut name still identifies the element:
# `[k]` separates any two that end up alike).
MAX_NAME_CHARS = 60

_TYPE_RE = re.compile(r'type "(.*)" into (.+)', re.S)


class ActionError(ValueError):
  """The text is no action of the grammar, or names no element on the page."""


class Element(NamedTuple):
  """One listed element of a page."""

  ref: int  # MiniWoB's ref for this episode (never shown to the agent)
  role: str  # lower-cased tag, e.g. "button", "input_text"
  name: str  # its text, or an input's label ("" when it has none)
  element_id: str  # the HTML id ("" when none)
  value: str | bool | None  # an input's value; a checkbox's checked flag
  focused: bool
  descriptor: str  # the element as actions name it, unique on the page


class ParsedAction(NamedTuple):
  """An action text mapped onto the page."""

  verb: str  # "click", "type" or "press"
  element: Element | None  # the element clicked or typed into
  text: str  # what "type" types ("" otherwise)
  key: str  # MiniWoB's key for "press" ("" otherwise)


def quote_name(text: Any) -> str:
  """One-line, length-capped text that fits between double quotes."""
  name = base.clean_text(str(text)).replace('"', "'")
  if len(name) > MAX_NAME_CHARS:
    name = name[: MAX_NAME_CHARS - 3] + "..."
  return name


def _descriptor(role: str, name: str, element_id: str) -> str:
  head = f'"{name}" ' if name else ""
  tail = f" #{element_id}" if element_id else ""
  return f"{head}({role}{tail})"


def _leaf_text(node: dict[str, Any]) -> str | None:
  """The text of a leaf: its own, or its children's when all are text nodes."""
  if "text" in node:
    return str(node["text"])
  children = node.get("children", ())
  if children and all(c["tag"].lower() == "t" for c in children):
    return " ".join(str(c.get("text", "")) for c in children)
  return None


def _all_text(node: dict[str, Any]) -> str:
  text = _leaf_text(node)
  if text is not None:
    return text
  return " ".join(_all_text(c) for c in node.get("children", ()))


def _label_of(node: dict[str, Any], parent: dict[str, Any] | None) -> str:
  """An input's label: its parent label's words, else a label just before it."""
  if parent is None:
    return ""
  siblings = parent.get("children", ())
  if parent["tag"].lower() == "label":
    return " ".join(
        str(s.get("text", "")) for s in siblings if s["tag"].lower() == "t"
    )
  index = next(i for i, s in enumerate(siblings) if s is node)
  if index > 0 and siblings[index - 1]["tag"].lower() == "label":
    return _leaf_text(siblings[index - 1]) or ""
  return ""


def _listed(node, parent) -> tuple[str, str] | None:
  """(role, name) of a node that the listing keeps; None for the others."""
  role = node["tag"].lower()
  if role == "t" or int(node.get("ref", 0)) <= 0:
    return None  # text fragments cannot be clicked by ref
  if role.startswith("input_") or role in INTERACTIVE_ROLES:
    own = _all_text(node) if role in INTERACTIVE_ROLES else ""
    return role, quote_name(own or _label_of(node, parent))
  text = _leaf_text(node)
  if text is None or not text.strip():
    return None  # containers and empty boxes
  return role, quote_name(text)


def page_elements(dom: dict[str, Any]) -> list[Element]:
  """The page's listed elements, in page order, each with a unique descriptor.

  Listed: every input, button, link, select and textarea, and every other
  leaf element with text (MiniWoB tasks make spans, divs and cells
  clickable). Containers, empty boxes and text fragments are left out.

  Args:
    dom: the tree returned by MiniWoB's `core.getDOMInfo()`.

  Returns:
    The elements; descriptors repeat no other (a `[k]` suffix counts the
    k-th element of an otherwise equal descriptor, k >= 2).
  """
  found = []
  stack = [(dom, None)]
  while stack:
    node, parent = stack.pop()
    kept = _listed(node, parent)
    if kept is not None:
      found.append((node, kept))
    for child in reversed(node.get("children", ())):
      stack.append((child, node))
  seen: dict[str, int] = {}
  elements = []
  for node, (role, name) in found:
    element_id = quote_name(node.get("id") or "").replace(" ", "_")
    # The id names only what has no name: ids such as "ch0" number the
    # elements of one instance, and would make one action two texts.
    descriptor = _descriptor(role, name, "" if name else element_id)
    seen[descriptor] = seen.get(descriptor, 0) + 1
    if seen[descriptor] > 1:
      descriptor += f" [{seen[descriptor]}]"
    elements.append(
        Element(
            ref=int(node["ref"]),
            role=role,
            name=name,
            element_id=element_id,
            value=node.get("value"),
            focused=bool(node.get("focused", False)),
            descriptor=descriptor,
        )
    )
  return elements


def listing_text(elements: Sequence[Element]) -> str:
  """The current view: one line per element, its descriptor and its state.

  E.g. `"Username" (input_text #username) value="vina" focused`, or
  `"red" (input_checkbox) checked`.
  """
  lines = []
  for e in elements:
    line = e.descriptor
    if isinstance(e.value, bool):
      line += " checked" if e.value else ""
    elif e.value:
      line += f' value="{quote_name(e.value)}"'
    if e.focused:
      line += " focused"
    lines.append(line)
  return "\n".join(lines) if lines else "(empty page)"


def render_action(action: ParsedAction) -> str:
  """The text of a parsed action (`parse_action`'s inverse)."""
  if action.verb == "press":
    key = next(k for k, v in KEYS.items() if v == action.key)
    return "press " + key
  if action.verb == "type":
    return f'type "{quote_name(action.text)}" into {action.element.descriptor}'
  return "click " + action.element.descriptor


def candidate_actions(
    elements: Sequence[Element], values: Iterable[Any]
) -> list[str]:
  """The actions worth offering on a page, sorted.

  Args:
    elements: the page's elements (`page_elements`).
    values: the values the task's utterance names (MiniWoB's fields).

  Returns:
    `click` for every element, `type` of every non-empty value into every
    text input, and `press enter` while a text input has the focus.
  """
  texts = sorted({quote_name(v) for v in values if quote_name(v)})
  actions = []
  for e in elements:
    actions.append(render_action(ParsedAction("click", e, "", "")))
    if e.role in TEXT_INPUT_ROLES:
      actions += [render_action(ParsedAction("type", e, t, "")) for t in texts]
      if e.focused:
        actions.append("press enter")
  return sorted(set(actions))


def _find(descriptor: str, elements: Sequence[Element]) -> Element:
  """The element a descriptor names: exactly, else ignoring case and spaces."""
  for e in elements:
    if e.descriptor == descriptor:
      return e
  folded = base.clean_text(descriptor).lower()
  matches = [e for e in elements if e.descriptor.lower() == folded]
  if len(matches) == 1:
    return matches[0]
  raise ActionError(f"no element {descriptor} on the page")


def parse_action(text: str, elements: Sequence[Element]) -> ParsedAction:
  """Maps an action text onto the page.

  Args:
    text: e.g. `click "Ok" (button)`, `type "vina" into "Username"
      (input_text #username)`, `press enter`.
    elements: the current page's elements (`page_elements`).

  Returns:
    The action, with the element it names.

  Raises:
    ActionError: not an action of the grammar, an unknown key, no such
      element on the page, or `type` into an element that is no text input.
  """
  action = text.strip()
  verb, _, rest = action.partition(" ")
  verb = verb.lower()
  if verb == "press":
    key = KEYS.get(rest.strip().lower())
    if key is None:
      raise ActionError(
          f"unknown key {rest.strip()!r}; keys: {', '.join(sorted(KEYS))}"
      )
    return ParsedAction("press", None, "", key)
  if verb == "click" and rest.strip():
    return ParsedAction("click", _find(rest.strip(), elements), "", "")
  match = _TYPE_RE.fullmatch("type " + rest) if verb == "type" else None
  if match:
    element = _find(match.group(2).strip(), elements)
    if element.role not in TEXT_INPUT_ROLES:
      raise ActionError(f"{element.descriptor} is not a text input")
    return ParsedAction("type", element, match.group(1), "")
  # A line of the listing on its own (`"Ok" (button)`): that element,
  # clicked. A generating LM copies the listing more readily than it writes
  # the verb.
  try:
    return ParsedAction("click", _find(action, elements), "", "")
  except ActionError:
    pass
  raise ActionError(
      f'not an action: {text!r} (use: click <element> | type "<text>" into'
      " <element> | press <key>)"
  )
