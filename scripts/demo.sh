#!/usr/bin/env bash
# The main job on the embedded default data: installs, fetches the Bible, Brown, Penn
# Treebank and Twitter emoji corpora, trains the en->fr translator, the POS tagger, the
# character language model and the image captioner with their quick profiles, exports
# them, serves all four, sends sample requests with the project's client and prints the
# answers.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh || exit 1
EXPORTS=${EXPORTS:-exports}
PORT=${PORT:-8500}
METRICS_PORT=${METRICS_PORT:-8501}

echo "== training the translator (quick profile) and exporting to $EXPORTS/"
python -m training.run translate --profile quick --export-base "$EXPORTS"
echo "== training the tagger (quick profile) and exporting to $EXPORTS/"
python -m training.run tag --profile quick --export-base "$EXPORTS"
echo "== training the character language model (quick profile) and exporting to $EXPORTS/"
python -m training.run charlm --profile quick --export-base "$EXPORTS"
echo "== training the image captioner (quick profile) and exporting to $EXPORTS/"
python -m training.run caption --profile quick --export-base "$EXPORTS"

LOG=runs/demo-server.log
mkdir -p runs
echo "== starting the server on port $PORT (log: $LOG)"
python -m serving --model-base-path "$EXPORTS" --port "$PORT" --metrics-port "$METRICS_PORT" \
  > "$LOG" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the server exited; its log ($LOG) ends with:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  python -m serving.client --target "localhost:$PORT" health >/dev/null 2>&1 && break
  sleep 1
done
python -m serving.client --target "localhost:$PORT" health

echo "== sample requests"
python -m serving.client --target "localhost:$PORT" translate --beam-width 4 --num-hypotheses 3 \
  "In the beginning God created the heavens and the earth." \
  "Jesus said to him, I am the way, the truth, and the life."
python -m serving.client --target "localhost:$PORT" tag \
  "The old man the boats." "Time flies like an arrow; fruit flies like a banana." \
  "She didn't send the parcel to Atlanta's new post office on Friday."
python -m serving.client --target "localhost:$PORT" generate "the company said" \
  --max-chars 200 --temperature 0.7 --seed 7
python -m serving.client --target "localhost:$PORT" generate --beam-width 4 --max-chars 80
# Emoji the captioner never saw: a whole new emoji, and a trained emoji in a new skin tone.
EMOJI=${RECUR_CACHE:-$HOME/.cache/recur}/emoji-datasource-twitter-16.0.0/package/img/twitter/64
python -m serving.client --target "localhost:$PORT" caption --beam-width 4 --num-hypotheses 2 \
  "$EMOJI/1f423.png" "$EMOJI/1f477-1f3ff.png"

echo "== metrics at http://localhost:$METRICS_PORT/metrics, for example:"
python - "$METRICS_PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://localhost:{sys.argv[1]}/metrics").read().decode()
print("\n".join(l for l in text.splitlines()
                if l.startswith(("recur_requests_total", "recur_request_duration_seconds_count"))))
PY
echo "== done; the server stops now. Run it by hand with:"
echo "   .venv/bin/python -m serving --model-base-path $EXPORTS"
