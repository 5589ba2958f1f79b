#!/usr/bin/env bash
# Runs the Bazel tests offline: `make bazel-test`, or
#   tools/bazel/run_bazel_test.sh [bazel test flags and targets]   (default //...)
# e.g. tools/bazel/run_bazel_test.sh //:agent_test   (a test tagged "manual").
#
# Uses Debian's bazel-bootstrap (installed here when missing and we are root).
# Bazel would download rules_cc, rules_java and remote_coverage_tools; the
# stubs in tools/bazel/ replace them. Tests run with .venv's Python (native
# py_test rules, --python_path). Bazel's output root lives outside the
# repository; the bazel-* links it makes here are gitignored.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
python="$root/.venv/bin/python"

if [[ ! -x "$python" ]]; then
  echo "run_bazel_test.sh: $python is missing: run 'make venv' first" >&2
  exit 1
fi

if ! command -v bazel >/dev/null 2>&1; then
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "run_bazel_test.sh: bazel is not installed, and installing it needs" \
      "root: run 'sudo apt-get update && sudo apt-get install -y" \
      "bazel-bootstrap' (Debian/Ubuntu), then retry" >&2
    exit 1
  fi
  echo "run_bazel_test.sh: installing Debian's bazel-bootstrap" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q bazel-bootstrap
fi

# A stale BUILD fails here with a diff, before Bazel reports missing files.
"$python" tools/bazel/gen_build.py --check

if [[ -n "${BAZEL_OUTPUT_USER_ROOT:-}" ]]; then
  output_root="$BAZEL_OUTPUT_USER_ROOT"
elif [[ -n "${HOME:-}" ]] && mkdir -p "$HOME/.cache/bazel" 2>/dev/null \
  && [[ -w "$HOME/.cache/bazel" ]]; then
  output_root="$HOME/.cache/bazel"
else
  output_root="${TMPDIR:-/tmp}/bazel-$(id -u)"
fi

# The server stays up a while for quick reruns; CI shuts it down at the end.
startup=(--output_user_root="$output_root" --max_idle_secs=900)
if [[ "${CI:-}" == "true" ]]; then
  trap 'bazel "${startup[@]}" shutdown >/dev/null 2>&1 || true' EXIT
fi

stubs="$root/tools/bazel"
start=$SECONDS
status=0
bazel "${startup[@]}" test \
  --override_repository=rules_cc="$stubs/rules_cc" \
  --override_repository=rules_java="$stubs/rules_java" \
  --override_repository=remote_coverage_tools="$stubs/remote_coverage_tools" \
  --python_path="$python" \
  --test_env=PATH="$root/.venv/bin:$PATH" \
  "${@:-//...}" </dev/null || status=$?
echo "run_bazel_test.sh: bazel test exited $status after $((SECONDS - start)) s"
exit "$status"
