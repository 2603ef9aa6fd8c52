#!/usr/bin/env bash
# Reading the repository must not rebuild the crate: build, run `git status` (which
# rewrites .git/index) and touch the index, then cargo must report echopilot fresh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
git status >/dev/null
touch "$(git rev-parse --git-path index)"
out=$(cargo build -v 2>&1)
if ! grep -q 'Fresh echopilot' <<<"$out" || grep -q 'Running `.*build-script-build' <<<"$out"; then
  echo "build-fresh: FAILED: git status made cargo rebuild echopilot" >&2
  grep -E 'Dirty|Running|Compiling echopilot' <<<"$out" >&2 || true
  exit 1
fi
echo "build-fresh: ok (Fresh echopilot after git status)"
