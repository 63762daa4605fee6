#!/usr/bin/env bash
# Build twinlane and run its tests: unit and integration tests in a -Werror build, the same
# again under AddressSanitizer and UndefinedBehaviorSanitizer, the libFuzzer targets for a
# fixed time each, then the tests against real Apache Kafka brokers (ctest label "kafka").
#
# Usage: scripts/test.sh [--help] [--quick]
#   --quick   skip the sanitizer build, the fuzz targets and the real-Kafka tests
# Installs missing dependencies first (scripts/setup.sh). Build trees: build/, build-asan/,
# build-fuzz/.
# Exit status: 0 when every test passed, non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option '$arg'; try --help" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

step "set-up"
scripts/setup.sh

step "build (-Werror)"
cmake -S . -B build -DTL_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"

step "unit and integration tests"
ctest --test-dir build --output-on-failure -L 'unit|integration'

if [[ $quick -eq 1 ]]; then
  exit 0
fi

step "sanitizer build (ASan + UBSan, no recovery)"
cmake -S . -B build-asan -DTL_WERROR=ON -DTL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j "$(nproc)"

step "unit and integration tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -L 'unit|integration'

# libFuzzer needs clang, so the fuzz targets get a build tree of their own (build-fuzz).
step "fuzz build (clang, libFuzzer + ASan + UBSan)"
CC=clang cmake -S . -B build-fuzz -DTL_WERROR=ON -DTL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_targets

step "fuzz tests (fixed time per target)"
ctest --test-dir build-fuzz --output-on-failure -L fuzz

step "tests against real Apache Kafka (KRaft)"
ctest --test-dir build --output-on-failure -L kafka
