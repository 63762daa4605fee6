#!/usr/bin/env bash
# Runs a libFuzzer binary for a fixed time on a temporary copy of a seed corpus.
#
# Usage: run_fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACT_DIR
# Crash, leak and timeout inputs are written to ARTIFACT_DIR. Exit status: 0 when the fuzzer
# found nothing, the fuzzer's own non-zero status otherwise, 2 for a usage error.
set -euo pipefail

if [[ $# -ne 4 ]]; then
  echo "Usage: run_fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACT_DIR" >&2
  exit 2
fi
fuzzer=$1
seeds=$2
seconds=$3
artifacts=$4

work=$(mktemp -d "${TMPDIR:-/tmp}/twinlane-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$seeds"/* "$work"/
mkdir -p "$artifacts"

# -max_len covers a full 4096-byte frame plus a second header. One input may take at most
# 10 s, and -rss_limit_mb stops a runaway allocation before it takes the machine.
"$fuzzer" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$work"
