"""MiniWoB++ web tasks in a real browser, behind the `TextEnv` protocol.

MiniWoB++ (Shi et al., 2017; Liu et al., 2018) is a suite of small web pages,
each a task given by an utterance ("Click on the "Ok" button.", "Enter the
username "vina" and the password "US" ... and press login."). The `miniwob`
package ships the pages and drives them in Chromium through selenium; this
adapter runs one headless Chromium per environment and shows the page to the
agent as text (`miniwob_actions`):

  task    = the utterance
  current = the visible elements, one line each: `"Ok" (button)`,
            `"Username" (input_text #username) value="vina" focused`
  history = the episode's actions so far

Actions are texts of one grammar: `click "Ok" (button)`, `type "vina" into
"Username" (input_text #username)`, `press enter`; `valid_actions()` offers a
click on every element and, for every text input, a `type` of every value
the utterance names (MiniWoB's fields). An action that names no element of
the page is a recorded no-op step (reward 0, `info["note"]` says why).

Rewards are MiniWoB's: 0 until the page ends the episode, then the task's
reward in [-1, 1], positive ones discounted by the time taken (the pages'
clock is real time: 10 s for most tasks; `episode_time_s` changes it).
Success is a positive reward; `score` is the episode's total reward and
`max_score` is 1.

Seeds: `reset(seed)` seeds the page's random generator, so the same seed
gives the same instance of the task; `reset()` replays the last seed.

The browser: Chromium and chromedriver from the system (Debian/Ubuntu:
`apt-get install chromium chromium-driver`; `MINIWOB_CHROME_BINARY` and
`MINIWOB_CHROMEDRIVER` point elsewhere; `SE_OFFLINE=true` stops selenium
from downloading a driver). chromedriver starts in a process group of its
own, which `close()` empties (a context manager, garbage collection and
interpreter exit close too); the browsers of a process killed outright
(SIGKILL, a crash in native code) are killed by the next environment's
start (`reap_orphans`). A browser that dies mid-episode ends that
episode (done, reward 0, a note) and is restarted by the next `reset`.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import tempfile
import time
import weakref
from typing import Any, NamedTuple

from jitrl_jax.envs import base
from jitrl_jax.envs import miniwob_actions as actions_lib
from jitrl_jax.envs import web_key

DEFAULT_TASK = "click-button"
DEFAULT_CHROME_BINARY = "/usr/bin/chromium"
DEFAULT_CHROMEDRIVER = "/usr/bin/chromedriver"
# What to offer when the page lists nothing (or the episode is over).
FALLBACK_ACTIONS = ("press enter", "press tab")
# Headless Chromium as root, in containers with a small /dev/shm.
CHROME_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--mute-audio",
)
INSTALL_HINT = (
    "MiniWoB++ runs in Chromium: install the browser and its driver (Debian/"
    "Ubuntu: `apt-get install -y chromium chromium-driver`, or `make web`), "
    "or point MINIWOB_CHROME_BINARY and MINIWOB_CHROMEDRIVER at them; "
    "SE_OFFLINE=true keeps selenium from downloading a driver"
)
# How `view_texts()` describes a state (the constructor's state_key).
STATE_KEYS = ("views", "authors")
PROFILE_PREFIX = "jitrl-miniwob-"  # a browser's temporary profile folder
_OWNER_FILE = "jitrl-owner"  # in it: owner pid, its start time, driver pid
_SYNC_SCREEN_ID = "sync-task-cover"  # present once a page has loaded


class _Web(NamedTuple):
  """The optional packages, imported on first use."""

  webdriver: Any  # selenium.webdriver
  service: Any  # selenium.webdriver.chrome.service.Service
  errors: tuple[type[BaseException], ...]  # what a dead browser raises
  script_error: type[BaseException]  # a page's own JavaScript error
  instance: Any  # miniwob.selenium_instance.SeleniumInstance
  fields: Any  # miniwob.fields
  keyboard: Any  # miniwob.selenium_actions
  screenshot: Any  # miniwob.screenshot


def _import_web() -> _Web:
  try:
    importlib.import_module("miniwob")  # registers the tasks with gymnasium
    instance = importlib.import_module("miniwob.selenium_instance")
    fields = importlib.import_module("miniwob.fields")
    keyboard = importlib.import_module("miniwob.selenium_actions")
    screenshot = importlib.import_module("miniwob.screenshot")
    webdriver = importlib.import_module("selenium.webdriver")
    service = importlib.import_module("selenium.webdriver.chrome.service")
    exceptions = importlib.import_module("selenium.common.exceptions")
    urllib3 = importlib.import_module("urllib3")
  except ImportError as e:
    raise base.EnvironmentUnavailableError(
        "MiniWoB++ tasks need the `miniwob` package (1.1.0) and selenium: "
        "pip install -e '.[web]' (or `make web`, which also installs "
        f"Chromium); missing: {e.name}"
    ) from e
  return _Web(
      webdriver=webdriver,
      service=service.Service,
      errors=(
          exceptions.WebDriverException,
          urllib3.exceptions.HTTPError,
          OSError,
      ),
      script_error=exceptions.JavascriptException,
      instance=instance.SeleniumInstance,
      fields=fields,
      keyboard=keyboard,
      screenshot=screenshot,
  )


def available_tasks() -> tuple[str, ...]:
  """The MiniWoB++ tasks the installed `miniwob` package registers, sorted."""
  _import_web()
  gym = importlib.import_module("gymnasium")
  names = (
      k[len("miniwob/") :].rsplit("-v", 1)[0]
      for k in gym.envs.registry
      if k.startswith("miniwob/")
  )
  return tuple(sorted(set(names)))


def browser_pids(group: int, marker: str) -> list[int]:
  """Pids of a browser's live (not zombie) processes, from /proc.

  A browser's processes are chromedriver's process group, plus Chromium's
  crash handlers, which leave the group but name the browser's own folder
  (`marker`) on their command line.

  Args:
    group: the process group id (chromedriver's pid).
    marker: the browser's profile folder.

  Returns:
    The pids, sorted; [] where /proc is absent.
  """
  pids = []
  for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
        stat = f.read()
      with open(f"/proc/{entry}/cmdline", "rb") as f:
        cmdline = f.read().decode("utf-8", "replace")
    except OSError:
      continue  # it ended meanwhile
    fields = stat[stat.rfind(")") + 2 :].split()  # state ppid pgrp ...
    if fields[0] in ("Z", "X"):
      continue
    if int(fields[2]) == group or marker in cmdline:
      pids.append(int(entry))
  return sorted(pids)


def _start_time(pid: int) -> str | None:
  """A live process's start time (clock ticks since boot), else None."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      stat = f.read()
  except (OSError, ValueError):
    return None
  fields = stat[stat.rfind(")") + 2 :].split()  # state ppid ... starttime
  return None if fields[0] in ("Z", "X") else fields[19]


def _write_owner(profile_dir: str, driver_pid: int = 0) -> None:
  """Names the browser's owner (this process) in its profile folder."""
  with open(os.path.join(profile_dir, _OWNER_FILE), "w", encoding="utf-8") as f:
    f.write(f"{os.getpid()} {_start_time(os.getpid())} {driver_pid}\n")


def reap_orphans(tmp_dir: str | None = None) -> list[int]:
  """Kills the browsers whose owning process is gone; returns their pids.

  A process killed by SIGKILL, or one that crashes in native code, runs no
  finaliser, so its browsers live on. Every browser's profile folder names
  its owner (pid and start time) and chromedriver's pid; a folder whose
  owner is no longer that process is an orphan's: its processes (the
  driver's group, and those naming the folder) are killed and the folder
  removed. Every new environment runs this first, so the next run cleans
  up after a killed one. Browsers of live processes are never touched.

  Args:
    tmp_dir: where the profile folders are (default: the temporary folder).
  """
  tmp_dir = tmp_dir or tempfile.gettempdir()
  killed = []
  try:
    names = os.listdir(tmp_dir)
  except OSError:
    return killed
  for name in names:
    folder = os.path.join(tmp_dir, name)
    if not name.startswith(PROFILE_PREFIX):
      continue
    try:
      with open(os.path.join(folder, _OWNER_FILE), encoding="utf-8") as f:
        owner_pid, owner_start, driver_pid = f.read().split()
      if _start_time(int(owner_pid)) == owner_start:
        continue  # its owner lives: not an orphan
    except (OSError, ValueError):
      continue  # not ours, or being created
    driver = int(driver_pid)
    pids = browser_pids(driver if driver > 0 else -1, folder)
    for pid in pids:
      try:
        os.kill(pid, signal.SIGKILL)
      except (ProcessLookupError, PermissionError):
        pass
    killed += pids
    shutil.rmtree(folder, ignore_errors=True)
  return sorted(killed)


def _shutdown(driver, process, profile_dir: str, wait_s: float = 5.0) -> None:
  """Quits the browser, kills what is left of its process group, cleans up.

  Never raises: also the finalizer at interpreter exit and after a crash.
  """
  try:
    driver.command_executor.client_config.timeout = 5
    driver.quit()
  except Exception:  # pylint: disable=broad-except
    pass  # dead already: the group kill below does the work
  if process is not None:
    try:
      os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass
    try:
      process.wait(timeout=wait_s)  # reap chromedriver, our child
    except Exception:  # pylint: disable=broad-except
      pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
      left = browser_pids(process.pid, profile_dir)
      if not left:
        break
      for pid in left:  # crash handlers outside the group
        try:
          os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
          pass
      time.sleep(0.05)
  shutil.rmtree(profile_dir, ignore_errors=True)


def _fields(web: _Web, task: str, utterance: Any) -> list[tuple[str, str]]:
  """The (key, value) pairs that the utterance names (MiniWoB's fields)."""
  if isinstance(utterance, dict):
    return [(str(k), str(v)) for k, v in utterance.get("fields", {}).items()]
  try:
    return list(web.fields.get_field_extractor(task)(utterance))
  except (KeyError, ValueError):
    return []  # a task without extractor, or an utterance it cannot read


class MiniWoBEnv:
  """A MiniWoB++ task in headless Chromium, as a `TextEnv`.

  Attributes:
    name: "miniwob:<task>".
    task: the MiniWoB++ task, e.g. "click-button", "login-user".
  """

  def __init__(
      self,
      task: str = DEFAULT_TASK,
      *,
      seed: int = 0,
      step_limit: int | None = None,
      episode_time_s: float | None = None,
      headless: bool = True,
      data_mode: str = "train",
      chrome_binary: str | None = None,
      chromedriver: str | None = None,
      command_timeout_s: float = 30.0,
      state_key: str = "views",
  ):
    """Starts Chromium on the task's page (not yet reset).

    Args:
      task: a MiniWoB++ task (`available_tasks()`).
      seed: the seed of the first `reset()`.
      step_limit: the episode ends (info["truncated"], reward 0) after this
        many steps; None: only the page ends it.
      episode_time_s: the page's clock (MiniWoB's EPISODE_MAX_TIME) in
        seconds; None keeps the task's own (10 s for most). A slow agent
        needs more: the page ends an episode at -1 when the clock runs out.
      headless: False shows the browser window (needs a display).
      data_mode: MiniWoB's data mode ("train" or "test").
      chrome_binary: Chromium; default $MINIWOB_CHROME_BINARY, else
        /usr/bin/chromium.
      chromedriver: its driver; default $MINIWOB_CHROMEDRIVER, else
        /usr/bin/chromedriver.
      command_timeout_s: the longest wait for one browser command; a
        browser that does not answer in time counts as dead.
      state_key: what `view_texts()` describes the state by: "views" (the
        element listing, the actions so far, the utterance) or "authors"
        (the action signature, the normalised URL, the utterance: the
        authors' web key, `web_key`). The observation is the listing
        either way.

    Raises:
      UnknownGameError: not a MiniWoB++ task.
      EnvironmentUnavailableError: miniwob, selenium, Chromium or
        chromedriver is missing, or the browser does not start.
    """
    if state_key not in STATE_KEYS:
      raise ValueError(
          f"state_key must be one of {STATE_KEYS}, got {state_key!r}"
      )
    self._web = _import_web()
    tasks = available_tasks()
    if task not in tasks:
      raise base.UnknownGameError(
          f"{task!r} is not a MiniWoB++ task; tasks: " + ", ".join(tasks)
      )
    os.environ.setdefault("SE_OFFLINE", "true")
    self.chrome_binary = chrome_binary or os.environ.get(
        "MINIWOB_CHROME_BINARY", DEFAULT_CHROME_BINARY
    )
    self.chromedriver = chromedriver or os.environ.get(
        "MINIWOB_CHROMEDRIVER", DEFAULT_CHROMEDRIVER
    )
    for label, path in (
        ("Chromium", self.chrome_binary),
        ("chromedriver", self.chromedriver),
    ):
      if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise base.EnvironmentUnavailableError(
            f"{label} not found at {path}. {INSTALL_HINT}"
        )
    self.task = task
    self.name = "miniwob:" + task
    self._seed = seed
    self._step_limit = step_limit
    self._episode_time_s = episode_time_s
    self._headless = headless
    self._data_mode = data_mode
    self._timeout_s = command_timeout_s
    self._state_key = state_key
    self._url = ""
    self._instance = None
    self._finalizer = None
    self._start_browser()
    self._started = False
    self._done = False
    self._moves = 0
    self._score = 0.0
    self._utterance = ""
    self._fields: list[tuple[str, str]] = []
    self._elements: list[actions_lib.Element] = []
    self._actions: tuple[str, ...] = ()

  # -- The browser ----------------------------------------------------------

  def _start_browser(self) -> None:
    """Starts chromedriver (own process group) and Chromium on the page."""
    web = self._web
    reap_orphans()
    profile_dir = tempfile.mkdtemp(prefix=PROFILE_PREFIX)
    _write_owner(profile_dir)
    options = web.webdriver.ChromeOptions()
    options.binary_location = self.chrome_binary
    for arg in CHROME_ARGS + ("--user-data-dir=" + profile_dir,):
      options.add_argument(arg)
    if self._headless:
      options.add_argument("--headless=new")
    # A session of its own: Ctrl-C in a terminal reaches only Python, which
    # then closes the browser, and close() can kill the whole group.
    # XDG_CONFIG_HOME puts the crash handlers' database in the profile
    # folder, so that `browser_pids` finds them; TMPDIR puts the temporary
    # files there too (a killed browser cannot remove its own).
    service = web.service(
        executable_path=self.chromedriver,
        popen_kw={"start_new_session": True},
        env={
            **os.environ,
            "XDG_CONFIG_HOME": profile_dir,
            "TMPDIR": profile_dir,
        },
    )
    try:
      driver = web.webdriver.Chrome(service=service, options=options)
    except Exception as e:  # pylint: disable=broad-except
      _shutdown(None, getattr(service, "process", None), profile_dir, 2.0)
      message = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise base.EnvironmentUnavailableError(
          f"Chromium did not start ({type(e).__name__}: {message}). "
          + INSTALL_HINT
      ) from e
    _write_owner(profile_dir, service.process.pid)
    self._finalizer = weakref.finalize(
        self, _shutdown, driver, service.process, profile_dir
    )
    instance = web.instance(
        index=0,
        subdomain=self.task,
        headless=self._headless,
        field_extractor=lambda utterance: [],  # see _fields
        data_mode=self._data_mode,
    )
    instance.driver = driver
    driver.command_executor.client_config.timeout = self._timeout_s
    try:
      # A headless window never has the focus, and pages such as focus-text
      # wait for focus events: let the page believe it has it.
      driver.execute_cdp_cmd(
          "Emulation.setFocusEmulationEnabled", {"enabled": True}
      )
      driver.get(instance.url)
      self._wait_for_page(driver)
      instance.inner_width, instance.inner_height = driver.execute_script(
          "return [window.innerWidth, window.innerHeight];"
      )
    except web.errors as e:
      self._stop_browser()
      raise base.EnvironmentUnavailableError(
          f"the page of {self.task} did not load in Chromium: {e}"
      ) from e
    self._instance = instance

  def _wait_for_page(self, driver) -> None:
    deadline = time.monotonic() + self._timeout_s
    script = f"return !!document.getElementById('{_SYNC_SCREEN_ID}');"
    while not driver.execute_script(script):
      if time.monotonic() > deadline:
        raise TimeoutError(f"{self.task}: the page never became ready")
      time.sleep(0.05)

  def _stop_browser(self) -> None:
    finalizer, self._finalizer, self._instance = self._finalizer, None, None
    if finalizer is not None:
      finalizer()

  def browser_processes(self) -> list[int]:
    """The live processes of this environment's browser (`browser_pids`)."""
    if self._finalizer is None or not self._finalizer.alive:
      return []
    _, _, (_, process, profile_dir), _ = self._finalizer.peek()
    return browser_pids(process.pid, profile_dir)

  @property
  def _driver(self):
    return self._instance.driver

  def _page_state(self) -> None:
    """Reads the page's elements into `_elements`."""
    dom = self._driver.execute_script("return core.getDOMInfo();")
    self._elements = actions_lib.page_elements(dom)

  # -- TextEnv --------------------------------------------------------------

  def reset(self, seed: int | None = None) -> base.StepResult:
    """Starts an episode on the page; restarts a dead browser first.

    Raises:
      EnvironmentUnavailableError: the browser fails twice in a row.
    """
    if seed is not None:
      self._seed = seed
    for attempt in (0, 1):
      try:
        if self._instance is None:
          self._start_browser()
        self._begin_episode()
        break
      except self._web.errors as e:
        self._stop_browser()
        if attempt:
          raise base.EnvironmentUnavailableError(
              f"{self.name}: the browser failed twice at reset: {e}"
          ) from e
    self._started = True
    self._done = False
    self._moves = 0
    self._score = 0.0
    self._actions = ()
    return base.StepResult(
        observation=self._listing(),
        reward=0.0,
        score=0.0,
        done=False,
        info=self._info(truncated=False, won=False, lost=False),
    )

  def _begin_episode(self) -> None:
    instance = self._instance
    instance.force_stop()
    if self._episode_time_s is not None:
      milliseconds = int(round(self._episode_time_s * 1000))
      self._driver.execute_script(f"core.EPISODE_MAX_TIME = {milliseconds};")
    instance.begin_task(seed=self._seed)
    utterance = self._driver.execute_script("return core.getUtterance();")
    self._fields = _fields(self._web, self.task, utterance)
    if isinstance(utterance, dict):
      utterance = utterance.get("utterance", "")
    self._utterance = base.clean_text(str(utterance))
    self._url = web_key.normalise_url(self._driver.current_url)
    self._page_state()

  def step(self, action: str) -> base.StepResult:
    """Acts on the page; an action it cannot map is a no-op with a note.

    Raises:
      RuntimeError: before the first reset or after the episode's end.
    """
    base.check_can_step(self.name, started=self._started, done=self._done)
    self._moves += 1
    self._actions += (base.clean_text(action),)
    note, metadata = "", None
    try:
      parsed = actions_lib.parse_action(action, self._elements)
    except actions_lib.ActionError as e:
      parsed, note = None, f"no-op: {e}"
    try:
      if parsed is not None:
        note = self._perform(parsed)
      metadata = self._instance.get_metadata()
      if not metadata["done"]:
        self._page_state()
    except self._web.errors as e:
      line = str(e).strip().splitlines()[0] if str(e).strip() else ""
      if isinstance(e, self._web.script_error):  # the page broke, not Chromium
        note = f"page script error ({line}); episode failed"
      else:
        self._stop_browser()  # the next reset starts a new one
        note = f"browser died ({type(e).__name__}: {line}); episode failed"
    page_done = metadata is None or bool(metadata["done"])
    reward = float(metadata["env_reward"]) if page_done and metadata else 0.0
    self._score += reward
    self._done, truncated = base.episode_end(
        page_done, self._moves, self._step_limit
    )
    info = self._info(
        truncated=truncated,
        won=page_done and reward > 0,
        lost=page_done and reward <= 0,
    )
    info["note"] = note
    if metadata is not None:
      info["reason"] = metadata.get("reason")
      info["raw_reward"] = float(metadata.get("raw_reward") or 0.0)
    return base.StepResult(
        observation=self._listing(),
        reward=reward,
        score=self._score,
        done=self._done,
        info=info,
    )

  def _perform(self, parsed: actions_lib.ParsedAction) -> str:
    """Runs a parsed action in the browser; returns a note ("" when it ran)."""
    driver = self._driver
    if self._instance.get_metadata()["done"]:
      return "the page had already ended the episode (its clock ran out)"
    if parsed.element is not None:
      try:
        clicked = driver.execute_script(
            f"return core.elementClick({parsed.element.ref});"
        )
      except self._web.script_error as e:
        return f"no-op: the page rejected the click ({e.msg})"
      if clicked is not True:
        return f"no-op: {parsed.element.descriptor} is gone ({clicked})"
    keyboard = self._web.keyboard
    if parsed.verb == "type":
      # Select what the field holds, so that the typed text replaces it.
      keyboard.execute_press_key("C-a", driver)
      keyboard.execute_type_text(parsed.text, driver)
    elif parsed.verb == "press":
      keyboard.execute_press_key(parsed.key, driver)
    return ""

  def valid_actions(self) -> list[str]:
    """Clicks on the page's elements and typed field values, sorted."""
    if self._done or not self._started:
      return list(FALLBACK_ACTIONS)
    values = [value for _, value in self._fields]
    return base.with_fallback(
        actions_lib.candidate_actions(self._elements, values), FALLBACK_ACTIONS
    )

  def _listing(self) -> str:
    if self._done or not self._started:
      return "(episode over)" if self._done else "(not started)"
    return actions_lib.listing_text(self._elements)

  def view_texts(self) -> base.ViewTexts:
    if self._state_key == "authors":
      return base.ViewTexts(
          current=web_key.action_signature(self.valid_actions()),
          history=self._url,
          task=self._utterance,
      )
    return base.ViewTexts(
        current=self._listing(),
        history="actions: " + ("; ".join(self._actions) or "none"),
        task=self._utterance,
    )

  def screenshot(self, path: str) -> str:
    """Writes a PNG of the task's area of the page (160 x 210 pixels).

    Args:
      path: the file to write.

    Returns:
      The path.
    """
    instance = self._instance
    if instance is None:
      raise RuntimeError(f"{self.name}: no browser (call reset())")
    image = self._web.screenshot.get_screenshot(
        instance.driver,
        true_width=instance.inner_width,
        true_height=instance.inner_height,
        crop_width=instance.task_width,
        crop_height=instance.task_height,
    )
    image.save(path, format="PNG")
    return path

  @property
  def score(self) -> float:
    return self._score

  @property
  def max_score(self) -> float:
    return 1.0

  @property
  def done(self) -> bool:
    return self._done

  def close(self) -> None:
    """Quits the browser and kills what is left of it; safe to call twice."""
    self._stop_browser()

  def __enter__(self) -> MiniWoBEnv:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _info(self, *, truncated: bool, won: bool, lost: bool) -> dict[str, Any]:
    return {
        "moves": self._moves,
        "won": bool(won),
        "lost": bool(lost and not truncated),
        "truncated": truncated,
        "location": "",
        "fields": dict(self._fields),
    }
