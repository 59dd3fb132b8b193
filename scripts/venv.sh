# Sourced by the other scripts: creates ./.venv (or $VENV) if needed, installs
# recur with its dev extra into it, and puts it first on PATH. Returns non-zero
# (and says why) if any step fails.
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' \
    2>/dev/null; then
  echo "error: recur needs Python 3.11 to 3.13 (TensorFlow 2.21's range); set" \
       "PYTHON=/path/to/python3.11 and rerun" >&2
  return 1
fi
if [ ! -x "$VENV/bin/pip" ]; then
  echo "== creating virtualenv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || { echo "error: could not create $VENV (on Debian:" \
    "apt-get install python3-venv)" >&2; return 1; }
fi
echo "== installing recur and its dependencies into $VENV (about a minute the first time)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip || return 1
"$VENV/bin/python" -m pip install --quiet -e ".[dev]" || {
  echo "error: installing recur into $VENV failed (see pip's message above)" >&2; return 1; }
export PATH="$PWD/$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
