#!/usr/bin/env bash
# Show a region outage: two mock Kafka regions run as separate processes, twinlane-agent writes
# a real log to both at a steady pace, the west region goes down for a few seconds and comes
# back. The script prints the agent's breaker and failover-timeline log lines (breaker open,
# acknowledgements continuing from east, west backfilled from the WAL, breaker closed) and
# then checks that both regions hold the same events, partition by partition, in order.
#
# Usage: scripts/demo-outage.sh [--help] [FILE]
#   FILE  log to replay, one event per line (default /var/log/dpkg.log, keyed by its 4th
#         space-separated column)
# Environment:
#   TWINLANE_DEMO_DIR  data directory and logs (default /tmp/twinlane-demo-outage)
#   DEMO_SECONDS       how long the replay takes (default 14)
# Installs missing dependencies and builds first (scripts/setup.sh, build/).
# Exit status: 0 when both regions hold the same events afterwards, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

case "${1:-}" in
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
input="${1:-/var/log/dpkg.log}"
demo_dir="${TWINLANE_DEMO_DIR:-/tmp/twinlane-demo-outage}"
seconds="${DEMO_SECONDS:-14}"
topic=dpkg-log

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
[[ -r "$input" && -f "$input" ]] || fail "cannot read $input; name a log file to replay: scripts/demo-outage.sh FILE"

step "set-up and build"
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
mock_bin="$root/build/chaos/twinlane-mock-cluster"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Sends one control command to a mock region and prints its reply.
control() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
print(s.recv(200).decode().strip())
PY
}

step "starting two mock Kafka regions and the agent"
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
for region in east west; do
  "$mock_bin" --name "$region" --brokers 3 --topic "$topic:6" \
    --bootstrap-file "$demo_dir/$region.bootstrap" --control "$demo_dir/$region.control" \
    >/dev/null 2>"$demo_dir/$region.log" &
  pids+=($!)
done
for _ in $(seq 1 100); do
  [[ -s "$demo_dir/east.bootstrap" && -s "$demo_dir/west.bootstrap" ]] && break
  sleep 0.1
done
east=$(cat "$demo_dir/east.bootstrap")
west=$(cat "$demo_dir/west.bootstrap")
cat >"$demo_dir/agent.conf" <<CONF
agent = { id = "demo-outage"; home_region = "east"; data_dir = "$demo_dir/data"; };
regions = ( { name = "east"; bootstrap = "$east"; }, { name = "west"; bootstrap = "$west"; } );
topics = ( { name = "$topic"; } );
CONF
"$root/build/agent/twinlane-agent" -c "$demo_dir/agent.conf" 2>"$demo_dir/agent.log" &
agent_pid=$!
pids+=("$agent_pid")
socket="$demo_dir/data/agent.sock"
for _ in $(seq 1 300); do
  [[ -S "$socket" ]] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$demo_dir/agent.log" >&2; fail "the agent exited during start-up (log above)"; }
  sleep 0.1
done
echo "agent log: $demo_dir/agent.log"

lines=$(wc -l <"$input")
delay_us=$(( seconds * 1000000 / (lines > 0 ? lines : 1) ))
step "replaying $lines lines over about $seconds s; west goes down at 4 s for 5 s"
perl -MTime::HiRes=usleep -pe "usleep($delay_us)" "$input" |
  "$root/build/cli/twinlane" produce --agent "$socket" --topic "$topic" --delimiter ' ' \
    --key-field 4 --progress >"$demo_dir/produce.out" 2>&1 &
produce_pid=$!
sleep 4
echo "west: all brokers down ($(control "$demo_dir/west.control" all-down))"
sleep 5
echo "west: all brokers up ($(control "$demo_dir/west.control" all-up))"
wait "$produce_pid" || fail "twinlane produce reported events that were not acknowledged; see $demo_dir/produce.out"
tail -n 1 "$demo_dir/produce.out"

for _ in $(seq 1 300); do
  grep -q 'breaker state changed region=west .* to=closed' "$demo_dir/agent.log" && break
  sleep 0.1
done

step "what the agent logged"
grep -E 'breaker state changed|failover timeline' "$demo_dir/agent.log" | cut -c1-200

step "reading both regions back"
# Resent events appear twice in a region; keep each event's last copy, as the guarantee says.
read_region() {
  kcat -C -b "$1" -t "$topic" -e -q -f '%p\t%o\t%h\n' |
    sed -E 's/\t.*twinlane-id=([^,]*).*/\t\1/' | sort -t$'\t' -k1,1n -k2,2n | tac |
    awk -F'\t' '!seen[$1 FS $NF]++ { print $1 "\t" $NF }' | tac
}
read_region "$east" >"$demo_dir/east.tsv"
read_region "$west" >"$demo_dir/west.tsv"
total_e=$(wc -l <"$demo_dir/east.tsv")
total_w=$(wc -l <"$demo_dir/west.tsv")
printf 'distinct events: east %d, west %d\n' "$total_e" "$total_w"
if cmp -s "$demo_dir/east.tsv" "$demo_dir/west.tsv"; then
  echo "Both regions hold the same events, partition by partition, in the same order."
  exit 0
fi
echo "The regions differ; compare $demo_dir/east.tsv and $demo_dir/west.tsv." >&2
exit 1
