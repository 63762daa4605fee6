#!/usr/bin/env bash
# ctest fixture for the tests against real Apache Kafka (label "kafka"): starts the
# one-broker KRaft clusters east and west once per ctest run, creates the test topics, and
# removes the clusters again at the end.
#
# Usage: kafka_fixture.sh start|stop
#   start  stop clusters left over in the run directory by an interrupted run, start east
#          and west in parallel, then create the topics below in both
#   stop   copy every broker's server.log to RUN-logs/, then 'kafka-cluster down'
#
# Environment:
#   TWINLANE_KAFKA_RUN  run directory of chaos/kafka/kafka-cluster (required, so that 'down'
#                       never touches clusters in the shared default /tmp/twinlane-kafka)
#   KAFKA_FIXTURE_EAST_PORT, KAFKA_FIXTURE_WEST_PORT
#                       base ports of east and west (default 24092 and 24192); each cluster
#                       uses its base port and the next one
#
# Topics (partitions in east / west):
#   nasa 6/6, zeek 6/6, partition-mismatch 3/6 (for the start-up check of the agent),
#   failover 3/3 (test_kafka_failover)
#
# A missing java or kcat fails 'start' with exit code 1 and not with a skip, so that a CI
# machine without them cannot report the tests against Kafka as passed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly REPO_ROOT
readonly TOOL="$REPO_ROOT/chaos/kafka/kafka-cluster"
readonly EAST_PORT=${KAFKA_FIXTURE_EAST_PORT:-24092}
readonly WEST_PORT=${KAFKA_FIXTURE_WEST_PORT:-24192}

die() {
  echo "kafka_fixture: $*" >&2
  exit 1
}

if [[ -z "${TWINLANE_KAFKA_RUN:-}" ]]; then
  die "TWINLANE_KAFKA_RUN is not set; set it to a run directory of this test run's own"
fi
export TWINLANE_KAFKA_RUN

# Runs one cluster's commands in the background: start, then create its topics.
# Arguments: cluster name, base port, partition count of partition-mismatch.
start_cluster() {
  local name=$1 port=$2 mismatch_partitions=$3
  "$TOOL" start "$name" --base-port "$port" >/dev/null
  "$TOOL" create-topic "$name" nasa --partitions 6
  "$TOOL" create-topic "$name" zeek --partitions 6
  "$TOOL" create-topic "$name" partition-mismatch --partitions "$mismatch_partitions"
  "$TOOL" create-topic "$name" failover --partitions 3
}

start() {
  local command
  for command in java kcat; do
    if ! command -v "$command" >/dev/null 2>&1; then
      die "$command not found; run scripts/setup.sh to install it"
    fi
  done

  mkdir -p "$TWINLANE_KAFKA_RUN"
  "$TOOL" down >/dev/null 2>&1 || true

  local started=$SECONDS
  start_cluster east "$EAST_PORT" 3 &
  local east_pid=$!
  start_cluster west "$WEST_PORT" 6 &
  local west_pid=$!

  local east_rc=0 west_rc=0
  wait "$east_pid" || east_rc=$?
  wait "$west_pid" || west_rc=$?
  if ((east_rc != 0 || west_rc != 0)); then
    "$TOOL" down >/dev/null 2>&1 || true
    die "start failed (east exit code $east_rc, west exit code $west_rc); see the messages above"
  fi

  echo "kafka_fixture: east at $("$TOOL" bootstrap east), west at $("$TOOL" bootstrap west)," \
    "topics created, in $((SECONDS - started)) s; data and logs in $TWINLANE_KAFKA_RUN"
}

stop() {
  local logs="$TWINLANE_KAFKA_RUN-logs"
  local log name
  rm -rf "$logs"
  mkdir -p "$logs"
  for log in "$TWINLANE_KAFKA_RUN"/*/broker-*/logs/server.log; do
    [[ -e "$log" ]] || continue
    name=${log#"$TWINLANE_KAFKA_RUN"/}
    name=${name%/logs/server.log}
    cp "$log" "$logs/${name//\//-}-server.log"
  done

  "$TOOL" down
  rmdir "$TWINLANE_KAFKA_RUN" 2>/dev/null || true
  echo "kafka_fixture: clusters removed; broker logs kept in $logs"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: kafka_fixture.sh start|stop" >&2
    exit 2
    ;;
esac
