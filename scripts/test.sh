#!/usr/bin/env bash
# Run every check tulle's CI runs: lint, types, the test suite (real Envoy processes on
# loopback) and the quick benchmarks. Needs only Python 3.11+ and pip on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Test tools from the system: openssl verifies certificates independently of tulle.
if ! command -v openssl >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openssl
fi

echo "== lint"
"$VENV/bin/ruff" check src tests benchmarks
echo "== types"
"$VENV/bin/mypy"
echo "== tests"
"$VENV/bin/pytest" -n "${TULLE_TEST_WORKERS:-auto}" -p no:cacheprovider "$@"
echo "== benchmarks (quick)"
"$VENV/bin/python" -m benchmarks --quick
