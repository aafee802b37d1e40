#!/usr/bin/env bash
# comfy-warden's benchmark: installs wrk and nginx (Debian packages) if missing, builds in
# release mode and runs `cargo bench --bench proxy`, which writes the results into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk nginx-light
  else
    echo "wrk and nginx are needed (Debian: apt-get install wrk nginx-light)" >&2
    exit 2
  fi
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec cargo bench --bench proxy
