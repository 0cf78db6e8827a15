#!/usr/bin/env bash
# Run every check tulle's CI runs: lint, types, the test suite (real Envoy processes on
# loopback) and the quick benchmarks. Needs only Python 3.11+ and pip on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Test tools from the system, installed with apt only when missing: openssl verifies
# certificates independently of tulle; promtool (Debian's prometheus package) checks the
# /metrics output and the config `tulle prometheus config` prints.
need() {  # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "== installing $2 (for $1)"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "$2" >/dev/null
}
need openssl openssl
need promtool prometheus
# The data-plane benchmark compiles its load generator and server (C, with libc's headers)
# and pins processes to CPUs with taskset.
need gcc build-essential
need taskset util-linux
# The etcd store's tests run a real etcd (Debian's etcd-server).
need etcd etcd-server
# A host whose clock is off, for `tulle check`'s hosts-clock: libfaketime.
need faketime faketime
# The dashboard's tests open it in a real browser: Debian's Chromium, headless.
need chromium chromium

echo "== lint"
"$VENV/bin/ruff" check src tests benchmarks
echo "== types"
"$VENV/bin/mypy"
echo "== tests"
# --durations: the slowest tests, to keep the suite within CI's time. --dist worksteal: xdist's
# default hands each worker a block of consecutive tests at the start, which put nearly every
# e2e test (collected first) on one worker; an idle worker now takes tests from a busy one.
"$VENV/bin/pytest" -n "${TULLE_TEST_WORKERS:-auto}" --dist worksteal -p no:cacheprovider \
  --durations=15 "$@"
echo "== benchmarks (quick)"
"$VENV/bin/python" -m benchmarks --quick
