# Sourced by the scripts: make .venv with tulle and its test tools installed.
VENV="${TULLE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  # Debian's python3 may lack the venv module; virtualenv from pip does the same job.
  "$PYTHON" -m venv "$VENV" 2>/dev/null || {
    "$PYTHON" -m pip install --quiet --user virtualenv
    "$PYTHON" -m virtualenv --quiet "$VENV"
  }
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
