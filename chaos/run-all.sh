#!/usr/bin/env bash
# Runs every chaos scenario in chaos/scenarios, one after another, and prints the closing
# table of twinlane-chaos. Scenarios run one at a time because two real Kafka clusters of
# three brokers each, the agent and the harness already fill a 2-core machine.
#
# Usage: chaos/run-all.sh [BUILD_DIR] [OUT_DIR] [OPTION...]
#   BUILD_DIR  CMake build tree with twinlane-chaos built (default: build)
#   OUT_DIR    report directory, one subdirectory per scenario (default: chaos-results)
#   OPTION     passed to twinlane-chaos run, such as --agent-bin PATH
#
# Needs root (network namespaces for the netns scenarios, a tmpfs mount for disk-full), java
# and kcat for the kafka scenarios (scripts/setup.sh installs them). Exit status is that of
# twinlane-chaos: 0 all passed, 1 an expectation failed, 3 a scenario could not run, 77 a
# scenario was skipped and nothing failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
out=${2:-chaos-results}
shift $(($# < 2 ? $# : 2))
chaos="$build/chaos/twinlane-chaos"
if [[ ! -x $chaos ]]; then
  echo "run-all.sh: $chaos not found; build first: cmake --build $build -j2" >&2
  exit 2
fi
exec "$chaos" run "$here"/scenarios/*.conf --out "$out" "$@"
