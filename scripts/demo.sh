#!/usr/bin/env bash
# Install tulle into .venv and run the demo bookstore until Ctrl-C.
set -euo pipefail
here="$PWD"
cd "$(dirname "$0")/.."
source scripts/env.sh
tulle="$(cd "$VENV/bin" && pwd)/tulle"
# Back where the user is: the demo prints its hints as commands that work from here
# (`.venv/bin/tulle ...` from the repository, its full path elsewhere).
cd "$here"
exec "$tulle" demo "$@"
