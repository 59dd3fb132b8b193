# Sourced by the other scripts: creates ./.venv (or $VENV) if needed, installs
# recur with its dev extra into it, and puts it first on PATH.
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: recur needs Python >= 3.11; set PYTHON=/path/to/python3.11 and rerun" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "== installing recur and its dependencies into $VENV (about a minute the first time)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
export PATH="$PWD/$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
