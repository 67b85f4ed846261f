#!/usr/bin/env bash
# The Quick start: builds the release binaries, starts the vendor simulator on 127.0.0.1:2776 and
# the gateway on its embedded default config (SMPP on 127.0.0.1:2775, customer demo/demo), runs a
# short load through the gateway with receipts, prints the report, and stops everything.
# No PostgreSQL or Redis needed. DURATION (default 10s) and RATE (default: closed model) tune it.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p smppgw -p smppgw-loadgen --bins
bin=target/release
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$bin/smppgw-sim" --quiet &
pids+=($!)
SMPPGW_LOG=${SMPPGW_LOG:-warn} "$bin/smppgw" &
pids+=($!)
# Wait until the gateway answers on its SMPP port.
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2775) 2>/dev/null && break; sleep 0.1; done
sleep 1 # vendor binds come up
# Something else on 2775 or 2776 (or on 8080, the HTTP API) stops one of them: say so, not a
# load run against the wrong peer.
for i in 0 1; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "demo: the $( [ "$i" = 0 ] && echo simulator || echo gateway ) exited at start (is 127.0.0.1:2775, :2776 or :8080 in use?)" >&2
    exit 1
  fi
done

args=(-t 127.0.0.1:2775 -u demo -p demo -d "${DURATION:-10s}" -b 4 -w 64 --registered-delivery 1 --quiet)
if [ -n "${RATE:-}" ]; then args+=(-r "$RATE"); fi
"$bin/smppgw-loadgen" "${args[@]}"
