#!/usr/bin/env bash
# The main job on the embedded default: installs, fetches the Bible corpus,
# trains the en->fr translator with the quick profile, exports it, serves it,
# sends a sample request with the project's client and prints the n-best.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
EXPORTS=${EXPORTS:-exports}
PORT=${PORT:-8500}
METRICS_PORT=${METRICS_PORT:-8501}

echo "== training (quick profile) and exporting to $EXPORTS/"
python -m training.run translate --profile quick --export-base "$EXPORTS"

echo "== starting the server on port $PORT (log: server.log)"
python -m serving --model-base-path "$EXPORTS" --port "$PORT" --metrics-port "$METRICS_PORT" \
  > server.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
python -m serving.client --target "localhost:$PORT" health --wait 300

echo "== sample request"
python -m serving.client --target "localhost:$PORT" translate --beam-width 4 --num-hypotheses 3 \
  "In the beginning God created the heavens and the earth." \
  "Jesus said to him, I am the way, the truth, and the life."

echo "== metrics at http://localhost:$METRICS_PORT/metrics, for example:"
python - "$METRICS_PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/metrics").read().decode()
print("\n".join(l for l in text.splitlines()
                if l.startswith(("recur_requests_total", "recur_request_duration_seconds_count"))))
PY
echo "== done; the server stops now. Run it by hand with:"
echo "   .venv/bin/python -m serving --model-base-path $EXPORTS"
