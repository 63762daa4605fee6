#!/usr/bin/env bash
# Run the twinlane demo: start twinlane-agent with two embedded regions (config/demo.conf),
# replay a real log through `twinlane produce`, read both regions back with kcat, and show per
# partition how many events each region holds and whether both hold the same events in the
# same order.
#
# Usage: scripts/demo.sh [--help] [FILE]
#   FILE  log to replay, one event per line (default /var/log/dpkg.log, keyed by its 4th
#         space-separated column: the package, or its state on status lines)
# Environment:
#   TWINLANE_DEMO_DIR  data directory and logs of the demo (default /tmp/twinlane-demo)
# Installs missing dependencies and builds first (scripts/setup.sh, build/).
# Exit status: 0 when both regions hold the same events, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

case "${1:-}" in
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
input="${1:-/var/log/dpkg.log}"
demo_dir="${TWINLANE_DEMO_DIR:-/tmp/twinlane-demo}"
topic=dpkg-log

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[[ -r "$input" && -f "$input" ]] || fail "cannot read $input; name a log file to replay: scripts/demo.sh FILE"
# The embedded regions are librdkafka mock clusters, which drop the oldest records of a
# partition past 5 MiB; the demo's 6 partitions hold about 30 MB before that happens.
if (( $(stat -c %s "$input") > 24 * 1024 * 1024 )); then
  echo "demo: warning: $input is larger than 24 MiB; the embedded regions keep at most 5 MiB per" \
       "partition, so the comparison of the two regions may fail" >&2
fi

step "set-up and build"
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
agent_bin="$root/build/agent/twinlane-agent"
cli_bin="$root/build/cli/twinlane"

step "starting twinlane-agent with two embedded regions"
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
# The demo's TCP listener moves off 127.0.0.1:7411 when something listens there already,
# for example a second demo.
tcp_port=7411
if (exec 3<>"/dev/tcp/127.0.0.1/$tcp_port") 2>/dev/null; then
  tcp_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "demo: 127.0.0.1:7411 is in use, so the agent listens on 127.0.0.1:$tcp_port instead"
fi
sed -e "s|^\(\s*data_dir = \).*|\1\"$demo_dir/data\";|" \
    -e "s|\"127\.0\.0\.1:7411\"|\"127.0.0.1:$tcp_port\"|" config/demo.conf >"$demo_dir/agent.conf"
"$agent_bin" -c "$demo_dir/agent.conf" 2>"$demo_dir/agent.log" &
agent_pid=$!
trap 'kill "$agent_pid" 2>/dev/null || true' EXIT

socket="$demo_dir/data/agent.sock"
for _ in $(seq 1 300); do
  [[ -S "$socket" && -s "$demo_dir/data/east.bootstrap" && -s "$demo_dir/data/west.bootstrap" ]] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$demo_dir/agent.log" >&2; fail "the agent exited during start-up (log above)"; }
  sleep 0.1
done
[[ -S "$socket" ]] || fail "the agent did not open $socket within 30 s; see $demo_dir/agent.log"
east=$(cat "$demo_dir/data/east.bootstrap")
west=$(cat "$demo_dir/data/west.bootstrap")
echo "agent log:   $demo_dir/agent.log"
echo "socket:      $socket (and TCP 127.0.0.1:$tcp_port)"
echo "region east: $east"
echo "region west: $west"
echo "(while the agent runs, read a region with: kcat -C -b ${east%%,*} -t $topic -e)"

step "replaying $input ($(wc -l <"$input") lines) through twinlane produce"
"$cli_bin" produce --agent "$socket" --topic "$topic" --file "$input" \
  --delimiter ' ' --key-field 4 --progress || fail "twinlane produce reported events that were not acknowledged"

step "reading both regions back"
# One line per record: partition, offset, twinlane-id. Sorted by partition, then offset.
read_region() {
  kcat -C -b "$1" -t "$topic" -e -q -f '%p\t%o\t%h\n' |
    sed -E 's/\t.*twinlane-id=([^,]*).*/\t\1/; s/^([0-9]+)\t([0-9]+)\t/\1\t\2\t/' |
    awk -F'\t' '{ print $1 "\t" $2 "\t" $NF }' | sort -t$'\t' -k1,1n -k2,2n
}
read_region "$east" >"$demo_dir/east.tsv"
read_region "$west" >"$demo_dir/west.tsv"

printf '\n%-10s %8s %8s   %s\n' partition east west "same events, same order"
same_all=1
for p in $(cut -f1 "$demo_dir/east.tsv" "$demo_dir/west.tsv" | sort -nu); do
  e=$(awk -F'\t' -v p="$p" '$1 == p' "$demo_dir/east.tsv" | cut -f3)
  w=$(awk -F'\t' -v p="$p" '$1 == p' "$demo_dir/west.tsv" | cut -f3)
  ne=$(printf '%s' "$e" | grep -c . || true)
  nw=$(printf '%s' "$w" | grep -c . || true)
  if [[ "$e" == "$w" ]]; then same=yes; else same=NO; same_all=0; fi
  printf '%-10s %8d %8d   %s\n' "$p" "$ne" "$nw" "$same"
done
total_e=$(wc -l <"$demo_dir/east.tsv")
total_w=$(wc -l <"$demo_dir/west.tsv")
printf '%-10s %8d %8d\n' total "$total_e" "$total_w"

step "stopping the agent"
kill -TERM "$agent_pid"
wait "$agent_pid" || true
trap - EXIT
grep -E 'final|stopped' "$demo_dir/agent.log" | sed 's/^/  /'

if [[ $same_all -eq 1 && $total_e -eq $total_w ]]; then
  printf '\nBoth regions hold the same %d events, partition by partition, in the same order.\n' "$total_e"
  exit 0
fi
printf '\nThe regions differ; compare %s/east.tsv and %s/west.tsv.\n' "$demo_dir" "$demo_dir" >&2
exit 1
