#!/usr/bin/env bash
# Build twinlane in Release mode without sanitizers and run the standard benchmark suite:
# twinlane-bench with its defaults (3 runs of each measurement), which prints the results
# table on stdout and writes JSON.
#
# Usage: bench/run.sh [--help] [TWINLANE-BENCH OPTION]...
#   Options are passed to twinlane-bench (see twinlane-bench --help), for example --runs 5.
# Environment: BENCH_BUILD_DIR (default /tmp/twinlane-bench-build), BENCH_JSON (default
# BENCH_BUILD_DIR/bench-results.json).
# Takes about 7 minutes on 2 cores. Datasets are read from ../shared/data when present.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

build_dir="${BENCH_BUILD_DIR:-/tmp/twinlane-bench-build}"
json="${BENCH_JSON:-$build_dir/bench-results.json}"

echo "==> build (Release) in $build_dir" >&2
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DTL_SANITIZE=OFF -DTL_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target twinlane-bench >/dev/null

echo "==> twinlane-bench --json $json $*" >&2
"$build_dir/bench/twinlane-bench" --json "$json" "$@"
echo "==> JSON written to $json" >&2
