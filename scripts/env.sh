# Sourced by the scripts: make .venv with tulle and its test tools installed.
VENV="${TULLE_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  # Debian's python3 may lack the venv module (python3-venv); virtualenv from pip does the
  # same job. Newer pips refuse --user installs into a system Python without the flag.
  "$PYTHON" -m venv "$VENV" 2>/dev/null || {
    rm -rf "$VENV"
    "$PYTHON" -m pip install --quiet --user virtualenv 2>/dev/null \
      || "$PYTHON" -m pip install --quiet --user --break-system-packages virtualenv
    "$PYTHON" -m virtualenv --quiet "$VENV"
  }
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
