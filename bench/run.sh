#!/usr/bin/env bash
# Side-by-side benchmark of direct-to-backend, HAProxy, NGINX and Weir; writes bench/RESULTS.md.
#
#   bench/run.sh                      # 3 interleaved rounds × 5 s per scenario (~15 minutes)
#   bench/run.sh --rounds 1 --duration 2 --only http1,tcp_rr   # a quick look
#
# Installs what it needs with apt (haproxy, nginx + its stream module, wrk, h2load, iperf3),
# builds Weir in release mode, then runs bench/bench.py. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
  # The packages start system-wide services; the benchmark runs its own instances.
  $SUDO systemctl stop haproxy nginx >/dev/null 2>&1 || true
fi

cargo build --release -p weir
exec python3 bench/bench.py "$@"
