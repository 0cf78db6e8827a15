#!/usr/bin/env bash
# Install tulle into .venv and run the demo bookstore until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
exec "$VENV/bin/tulle" demo "$@"
