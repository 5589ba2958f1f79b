"""Tests for jitrl_jax.envs.miniwob and miniwob_actions.

The grammar tests read a hand-written page and need no browser. The others
drive MiniWoB++ pages in a real headless Chromium; they skip where the
`miniwob` package, Chromium or chromedriver is missing, except under
CI=true, where they fail instead (CI installs them: `make web`).
"""

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

from jitrl_jax import config as config_lib
from jitrl_jax import envs
from jitrl_jax.envs import miniwob as miniwob_env
from jitrl_jax.envs import miniwob_actions as actions_lib
from jitrl_jax.envs import web_key
from tests import browser

# A page as core.getDOMInfo() gives it: a label before an input, a checkbox
# inside its label, two spans of the same text, an empty box, a named input.
_DOM = {
    "tag": "BODY",
    "ref": 1,
    "children": [
        {"tag": "LABEL", "ref": 3, "text": "Username", "children": []},
        {
            "tag": "INPUT_text",
            "ref": 4,
            "id": "username",
            "text": "",
            "value": "",
            "focused": True,
            "children": [],
        },
        {
            "tag": "LABEL",
            "ref": 5,
            "children": [
                {
                    "tag": "INPUT_checkbox",
                    "ref": 6,
                    "id": "ch0",
                    "text": "",
                    "value": True,
                    "children": [],
                },
                {"tag": "t", "ref": -1, "text": "red", "children": []},
            ],
        },
        {"tag": "BUTTON", "ref": 7, "text": 'Say "hi"', "children": []},
        {"tag": "SPAN", "ref": 8, "text": "5", "children": []},
        {"tag": "SPAN", "ref": 9, "text": "5", "children": []},
        {"tag": "DIV", "ref": 10, "text": "", "children": []},
        {
            "tag": "INPUT_text",
            "ref": 11,
            "id": "tt",
            "text": "",
            "value": "abc",
            "children": [],
        },
    ],
}


class ActionGrammarTest(absltest.TestCase):
  """The listing and the parser on a fixed page (no browser)."""

  def setUp(self):
    super().setUp()
    self.elements = actions_lib.page_elements(_DOM)

  def test_descriptors(self):
    # Names from text or labels, the id only where there is no name, "[2]"
    # for the second "5" span; the label holding the checkbox, the text
    # fragment and the empty div are not listed.
    self.assertEqual(
        [e.descriptor for e in self.elements],
        [
            '"Username" (label)',
            '"Username" (input_text)',
            '"red" (input_checkbox)',
            "\"Say 'hi'\" (button)",
            '"5" (span)',
            '"5" (span) [2]',
            "(input_text #tt)",
        ],
    )
    self.assertEqual([e.ref for e in self.elements], [3, 4, 6, 7, 8, 9, 11])

  def test_listing_shows_state(self):
    lines = actions_lib.listing_text(self.elements).splitlines()
    self.assertIn('"Username" (input_text) focused', lines)
    self.assertIn('"red" (input_checkbox) checked', lines)
    self.assertIn('(input_text #tt) value="abc"', lines)
    self.assertEqual(actions_lib.listing_text([]), "(empty page)")

  def test_candidates_and_round_trip(self):
    actions = actions_lib.candidate_actions(self.elements, ["vina", "vina", ""])
    # 7 clicks, "vina" into each of the 2 text inputs, Enter while one has
    # the focus.
    self.assertLen(actions, 7 + 2 + 1)
    self.assertEqual(actions, sorted(actions))
    self.assertIn('type "vina" into "Username" (input_text)', actions)
    self.assertIn("press enter", actions)
    for action in actions:
      parsed = actions_lib.parse_action(action, self.elements)
      self.assertEqual(actions_lib.render_action(parsed), action)
      if parsed.element is not None:
        self.assertIn(parsed.element.descriptor, action)

  def test_parse(self):
    parse = lambda text: actions_lib.parse_action(text, self.elements)
    self.assertEqual(parse('click "5" (span) [2]').element.ref, 9)
    self.assertEqual(parse('click "5" (span)').element.ref, 8)
    # Case and spacing are forgiven; the typed text is kept as written.
    self.assertEqual(parse('  CLICK  "username"   (LABEL) ').element.ref, 3)
    typed = parse('type "Hello World" into (input_text #tt)')
    self.assertEqual(
        (typed.verb, typed.text, typed.element.ref), ("type", "Hello World", 11)
    )
    self.assertEqual(parse("press Enter").key, "<Enter>")
    # An element alone, as the listing writes it, is a click on it.
    bare = parse('"5" (span) [2]')
    self.assertEqual((bare.verb, bare.element.ref), ("click", 9))
    self.assertEqual(
        actions_lib.render_action(parse('"username" (label)')),
        'click "Username" (label)',
    )
    for bad in (
        '"Nope" (button)',
        "dance wildly",
        "click",
        'click "Nope" (button)',
        'type "x" into "5" (span)',  # not a text input
        "press f13",
    ):
      with self.subTest(bad), self.assertRaises(actions_lib.ActionError):
        parse(bad)

  def test_missing_package_names_the_extra(self):
    real = importlib.import_module

    def import_module(name, *args):
      if name.split(".")[0] == "miniwob":
        raise ImportError(f"No module named {name!r}", name=name)
      return real(name, *args)

    with mock.patch.object(importlib, "import_module", import_module):
      with self.assertRaisesRegex(
          envs.EnvironmentUnavailableError, r"pip install -e '\.\[web\]'"
      ):
        miniwob_env.MiniWoBEnv("click-button")

  def test_registered(self):
    self.assertIn("miniwob", envs.base.registered_prefixes())

  def test_unknown_state_key(self):

    with self.assertRaisesRegex(ValueError, "state_key must be one of"):
      miniwob_env.MiniWoBEnv("click-button", state_key="url")


class WebKeyTest(parameterized.TestCase):
  """The authors' web state key (envs/web_key.py), by hand."""

  @parameterized.parameters(
      ("http://h:7770/catalog/product/1234?q=1#top", "shop/catalog/product/ID"),
      ("http://h:7780/a/9f86d081884c7d65/b", "h:7780/a/HASH/b"),
      ("http://h:7770/search/filter/price/10", "shop/search"),
      ("https://example.org/", "example.org"),
      ("file:///usr/lib/miniwob/html/click-tab.html?x", "file/click-tab.html"),
      ("http://h:7770/user/item-list", "shop/user/item-list"),
  )
  def test_normalise_url(self, url, want):
    self.assertEqual(web_key.normalise_url(url, {7770: "shop"}), want)

  def test_action_signature(self):
    signature = web_key.action_signature(
        ['click "Ok" (button)', "press  enter", 'click "Ok" (button)', ""]
    )
    self.assertEqual(signature, 'click "Ok" (button) ; press enter')
    self.assertEqual(web_key.action_signature([]), "")

  def test_authors_settings_are_valid_settings(self):
    settings = config_lib.Settings(**web_key.AUTHORS_SETTINGS)
    self.assertEqual(settings.view_floors, (1.0, 0.0, 0.27))


def _process_table() -> dict[int, tuple[str, int]]:
  """pid -> (command name, parent pid) of the live processes, from /proc."""
  table = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
          stat = f.read()
      except OSError:
        continue
      name = stat[stat.find("(") + 1 : stat.rfind(")")]
      state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
      if state not in ("Z", "X"):
        table[int(entry)] = (name, int(ppid))
  return table


def _browser_processes() -> set[int]:
  """Live chromium, chromedriver and crash-handler processes."""
  return {
      pid
      for pid, (name, _) in _process_table().items()
      if name.startswith("chrom")
  }


def _browser_temp_files() -> set[str]:
  """The temporary folders of browsers: profiles, shared memory, driver's."""
  return {
      name
      for name in os.listdir(tempfile.gettempdir())
      if name.startswith(("jitrl-miniwob-", "org.chromium."))
  }


# Scripted solutions: action templates filled with the utterance's fields.
_SOLUTIONS = {
    "click-button": ('click "{target}" (button)',),
    "enter-text": (
        'type "{target}" into (input_text #tt)',
        'click "Submit" (button)',
    ),
    "focus-text": ("click (input_text #tt)",),
    "login-user": (
        'type "{username}" into "Username" (input_text)',
        'type "{password}" into "Password" (input_password)',
        'click "Login" (button)',
    ),
    "click-button-sequence": ('click "ONE" (button)', 'click "TWO" (button)'),
}


class MiniWoBEnvTest(parameterized.TestCase):
  """The adapter on real pages; one shared browser for click-button."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    browser.require_browser()
    cls.env = envs.make_env("miniwob:click-button")
    cls.addClassCleanup(cls.env.close)

  def _assert_round_trip(self, env):
    """Every valid action parses back to the element it names."""
    listing = env.view_texts().current.splitlines()
    elements = actions_lib.page_elements(
        env._driver.execute_script("return core.getDOMInfo();")  # pylint: disable=protected-access
    )
    self.assertLen(listing, len(elements))
    for line, element in zip(listing, elements):
      self.assertTrue(line.startswith(element.descriptor), line)
    for action in env.valid_actions():
      parsed = actions_lib.parse_action(action, elements)
      self.assertEqual(actions_lib.render_action(parsed), action)
      if parsed.element is not None:
        self.assertIn(parsed.element.descriptor, action)

  def _solve(self, env, seed):
    start = env.reset(seed=seed)
    self.assertEqual((start.reward, start.score, start.done), (0.0, 0.0, False))
    self._assert_round_trip(env)
    fields = start.info["fields"]
    results, actions = [], []
    for template in _SOLUTIONS[env.task]:
      actions.append(template.format(**fields))
      self.assertIn(actions[-1], env.valid_actions())
      results.append(env.step(actions[-1]))
      self.assertEqual(results[-1].info["note"], "", actions[-1])
    self.assertEqual(env.view_texts().history, "actions: " + "; ".join(actions))
    return results

  def test_protocol(self):
    self.assertIsInstance(self.env, envs.TextEnv)
    self.assertEqual(self.env.name, "miniwob:click-button")
    self.assertEqual(self.env.max_score, 1.0)

  def test_authors_state_key(self):
    with envs.make_env("miniwob:click-button", state_key="authors") as env:
      start = env.reset(seed=3)
      views = env.view_texts()
      self.assertEqual(views.history, "file/click-button.html")
      self.assertEqual(
          views.current, web_key.action_signature(env.valid_actions())
      )
      self.assertIn("(button)", views.current)
      self.assertIn("Click on the", views.task)
      # The LM still reads the element listing.
      self.assertEqual(start.observation, self.env.reset(seed=3).observation)
      after = env.step(env.valid_actions()[0])
      self.assertEqual(env.view_texts().history, "file/click-button.html")
      self.assertNotIn("actions:", after.observation)

  def test_seeded_reset_is_deterministic(self):
    env = self.env

    def page(seed):
      observation = env.reset(seed=seed).observation
      return observation, env.view_texts(), env.valid_actions()

    first = page(3)
    env.step(env.valid_actions()[0])
    self.assertEqual(page(3), first)
    self.assertEqual(env.reset().observation, first[0])  # the last seed
    self.assertIn("Click on the", first[1].task)
    self.assertEqual(first[1].history, "actions: none")
    others = [page(seed) for seed in (4, 5, 6)]
    self.assertTrue(any(other != first for other in others))

  @parameterized.parameters(*_SOLUTIONS)
  def test_scripted_solution_earns_a_reward(self, task):
    env = (
        self.env if task == "click-button" else envs.make_env("miniwob:" + task)
    )
    if env is not self.env:
      self.addCleanup(env.close)
    for seed in (0, 1):
      results = self._solve(env, seed)
      for step in results[:-1]:
        self.assertEqual((step.reward, step.done), (0.0, False))
      last = results[-1]
      self.assertTrue(last.done)
      self.assertGreater(last.reward, 0.0)
      self.assertLessEqual(last.reward, env.max_score)
      self.assertTrue(last.info["won"])
      self.assertFalse(last.info["lost"])
      self.assertEqual(last.score, last.reward)
      self.assertEqual(env.score, last.reward)
      self.assertEqual(last.info["moves"], len(results))
      self.assertEqual(env.valid_actions(), ["press enter", "press tab"])
      with self.assertRaisesRegex(RuntimeError, "reset"):
        env.step("press enter")

  def test_unmappable_action_is_a_no_op(self):
    env = self.env
    start = env.reset(seed=2)
    target = start.info["fields"]["target"]
    for action, note in (
        ("dance wildly", "not an action"),
        ('click "No such thing" (button)', "no element"),
        (f'type "x" into "{target}" (button)', "not a text input"),
    ):
      result = env.step(action)
      self.assertEqual((result.reward, result.done), (0.0, False))
      self.assertIn("no-op", result.info["note"])
      self.assertIn(note, result.info["note"])
      self.assertEqual(result.observation, start.observation)
    self.assertEqual(result.info["moves"], 3)
    self.assertIn("actions: dance wildly; click", env.view_texts().history)
    won = env.step(f'click "{target}" (button)')
    self.assertGreater(won.reward, 0.0)

  def test_screenshot(self):
    self.env.reset(seed=0)
    folder = self.enterContext(tempfile.TemporaryDirectory())
    path = os.path.join(folder, "page.png")
    self.assertEqual(self.env.screenshot(path), path)
    with open(path, "rb") as f:
      header = f.read(24)
    self.assertEqual(header[:8], b"\x89PNG\r\n\x1a\n")
    width, height = (int.from_bytes(header[i : i + 4], "big") for i in (16, 20))
    self.assertEqual((width, height), (160, 210))

  def test_unknown_task_lists_the_tasks(self):
    with self.assertRaisesRegex(envs.UnknownGameError, "login-user"):
      envs.make_env("miniwob:no-such-task")

  def test_missing_browser_names_the_packages_and_variables(self):
    with self.assertRaises(envs.EnvironmentUnavailableError) as caught:
      envs.make_env("miniwob:click-button", chrome_binary="/nonexistent/x")
    for needed in (
        "chromium chromium-driver",
        "MINIWOB_CHROME_BINARY",
        "MINIWOB_CHROMEDRIVER",
        "SE_OFFLINE",
    ):
      self.assertIn(needed, str(caught.exception))

  def test_clock_running_out_loses(self):
    env = envs.make_env("miniwob:click-button", episode_time_s=0.5)
    self.addCleanup(env.close)
    target = env.reset(seed=0).info["fields"]["target"]
    time.sleep(1.0)
    result = env.step(f'click "{target}" (button)')
    self.assertTrue(result.done)
    self.assertEqual(result.reward, -1.0)
    self.assertTrue(result.info["lost"])
    self.assertIn("clock", result.info["note"])


class BrowserLifecycleTest(parameterized.TestCase):
  """No browser process (or temporary folder) outlives its environment."""

  def setUp(self):
    super().setUp()
    browser.require_browser()
    self.before = _browser_processes()
    self.before_files = _browser_temp_files()

  def _assert_gone(self, pids):
    self.assertNotEmpty(pids)
    self.assertEmpty(set(pids) & set(_process_table()))
    self.assertEmpty(_browser_processes() - self.before)
    self.assertEmpty(_browser_temp_files() - self.before_files)

  def test_close(self):
    env = envs.make_env("miniwob:click-button")
    env.reset(seed=0)
    pids = env.browser_processes()
    names = {_process_table()[p][0] for p in pids}
    self.assertTrue({"chromedriver", "chromium"} <= names, names)
    env.close()
    self._assert_gone(pids)
    self.assertEqual(env.browser_processes(), [])
    env.close()  # twice is fine

  def test_exception_inside_with(self):
    with self.assertRaisesRegex(ValueError, "on purpose"):
      with envs.make_env("miniwob:click-button") as env:
        env.reset(seed=0)
        pids = env.browser_processes()
        raise ValueError("on purpose")
    self._assert_gone(pids)

  def test_browsers_of_a_killed_process_are_reaped(self):
    # A process killed outright runs no finaliser: its browser lives on
    # until the next environment starts (miniwob.reap_orphans).
    script = (
        "import os, signal\n"
        "from jitrl_jax import envs\n"
        "env = envs.make_env('miniwob:click-button')\n"
        "env.reset(seed=0)\n"
        "print(' '.join(map(str, env.browser_processes())), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    self.assertEqual(done.returncode, -signal.SIGKILL, done.stderr[-2000:])
    pids = [int(p) for p in done.stdout.split()]
    self.assertNotEmpty(set(pids) & set(_process_table()))  # orphaned
    env = envs.make_env("miniwob:click-button")  # reaps at its start
    self.addCleanup(env.close)
    deadline = time.monotonic() + 10
    while set(pids) & set(_process_table()) and time.monotonic() < deadline:
      time.sleep(0.1)
    self.assertEmpty(set(pids) & set(_process_table()))
    self.assertEmpty(miniwob_env.reap_orphans())  # env's own is not touched
    self.assertNotEmpty(env.browser_processes())
    env.close()
    self._assert_gone(pids)

  @parameterized.parameters("chromium", "chromedriver")
  def test_killed_browser_fails_the_episode_and_recovers(self, victim):
    env = envs.make_env("miniwob:click-button")
    self.addCleanup(env.close)
    target = env.reset(seed=0).info["fields"]["target"]
    old = env.browser_processes()
    table = _process_table()
    driver = next(p for p in old if table[p][0] == "chromedriver")
    pid = driver
    if victim == "chromium":  # the browser's main process
      pid = next(p for p in old if table[p] == ("chromium", driver))
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    result = env.step(f'click "{target}" (button)')
    self.assertLess(time.monotonic() - start, 20.0)  # no hang
    self.assertTrue(result.done)
    self.assertEqual(result.reward, 0.0)
    self.assertFalse(result.info["won"])
    self.assertIn("browser died", result.info["note"])
    self.assertEmpty(set(old) & set(_process_table()))
    again = env.reset(seed=0)  # a new browser
    self.assertEmpty(set(env.browser_processes()) & set(old))
    self.assertGreater(env.step(f'click "{target}" (button)').reward, 0.0)
    self.assertEqual(again.info["fields"]["target"], target)
    new = env.browser_processes()
    env.close()
    self._assert_gone(new)


if __name__ == "__main__":
  absltest.main()
