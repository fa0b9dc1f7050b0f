#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# chaos.sh - fault injection against the process pool (not a timed test).
#
# Usage: bench/chaos.sh [SECONDS] [BUILD_DIR]     (defaults: 60, build)
#        CHAOS_SERVER_ODDS=N: a fork server picked is killed one time in N
#        (default 20)
#
# For SECONDS, runs at once
#   - bench/chaos_map: pool maps and submits, every result checked;
#   - `manyhands pi` on processes, over and over, each count compared with
#     an undisturbed run on threads;
# while every 50-250 ms it picks a random worker or fork server of theirs
# and SIGKILLs it, SIGSTOPs it (continued 0.1-1.5 s later, unless a time
# limit killed it first) or SIGCONTs one.  Fork servers are killed rarely
# (one pick in 20): the pool forks a new one and new workers, and a pi run
# must survive that too, with the same count.
# Zero hangs (every run has a deadline), zero wrong counts; each failure is
# printed per item.  Ends with kills survived per minute.  Exit 0 = clean.
set -u
secs=${1:-60}
build=${2:-build}
cli=$build/manyhands
map=$build/bench/chaos_map
[ -x "$cli" ] && [ -x "$map" ] || { echo "chaos.sh: build $cli and $map first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'kill -CONT -- $(cat "$tmp"/stopped 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
n=2e8
want=$("$cli" pi $n 2 --backend threads --json | sed -n 's/.*"inside": *\([0-9]*\).*/\1/p')
[ -n "$want" ] || { echo "chaos.sh: no reference count" >&2; exit 2; }

"$map" "$secs" 3 >"$tmp/map.out" 2>&1 &
mappid=$!

# pi runs, each with a deadline: a run that outlives it is a hang.
(
  end=$(( $(date +%s) + secs ))
  i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    i=$((i + 1))
    out=$(timeout 60 "$cli" pi $n 2 --backend processes --json 2>"$tmp/pi.err")
    rc=$?
    got=$(printf '%s' "$out" | sed -n 's/.*"inside": *\([0-9]*\).*/\1/p')
    re=$(printf '%s' "$out" | sed -n 's/.*"reruns": *\([0-9]*\).*/\1/p')
    if [ $rc = 124 ]; then echo "pi run $i: HANG"
    elif [ $rc != 0 ]; then echo "pi run $i: failed ($rc): $(tr '\n' ' ' <"$tmp/pi.err")"
    elif [ "$got" != "$want" ]; then echo "pi run $i: WRONG count $got, want $want"
    else echo "pi run $i: ok (reruns ${re:-?})"; fi
  done
) >"$tmp/pi.out" 2>&1 &
pipid=$!

# Our victims: children (fork servers) and grandchildren (workers) of the
# map driver and of the manyhands process running now (under `timeout`).
kids() { cat /proc/"$1"/task/*/children 2>/dev/null; }  # fast, unlike pgrep -P
# The pi run's manyhands process, found by name: how deep it sits below the
# loop depends on whether bash forks a subshell for $(...) (here it does:
# loop -> bash -> timeout -> manyhands).  A fixed depth once took the command
# itself for a fork server and its fork server for a worker.  The search
# stops at the first manyhands: its fork server has the same name.
pi_cli() {
  local c
  for c in $(kids "$1"); do
    if [ "$(cat /proc/"$c"/comm 2>/dev/null)" = manyhands ]; then echo "$c"
    else pi_cli "$c"; fi
  done
}
victims() {
  local r s
  for r in "map $mappid" "pi $(pi_cli "$pipid")"; do
    for s in $(kids "${r#* }"); do
      echo "server ${r% *} $s"
      for w in $(kids "$s"); do echo "worker ${r% *} $w"; done
    done
  done
}

kills=0 stops=0 server_kills=0 pi_kills=0 odds=${CHAOS_SERVER_ODDS:-20}
: >"$tmp/stopped"
t0=$(date +%s)
while kill -0 $mappid 2>/dev/null || kill -0 $pipid 2>/dev/null; do
  sleep "0.$(( RANDOM % 200 + 50 ))"
  mapfile -t vs < <(victims)
  [ ${#vs[@]} -gt 0 ] || continue
  v=${vs[RANDOM % ${#vs[@]}]}
  read -r kind owner pid <<<"$v"
  if [ "$kind" = server ]; then
    if [ $((RANDOM % odds)) = 0 ] && kill -KILL "$pid" 2>/dev/null; then
      server_kills=$((server_kills + 1))
      [ "$owner" = pi ] && pi_kills=$((pi_kills + 1))
    fi
    continue
  fi
  case $((RANDOM % 3)) in
    0|1) if kill -KILL "$pid" 2>/dev/null; then
           kills=$((kills + 1))
           [ "$owner" = pi ] && pi_kills=$((pi_kills + 1))
         fi ;;
    2) if kill -STOP "$pid" 2>/dev/null; then
         stops=$((stops + 1))
         ( sleep "$(( RANDOM % 15 )).$(( RANDOM % 10 ))e-1"; kill -CONT "$pid" 2>/dev/null ) &
       fi ;;
  esac
done
wait $mappid; maprc=$?
wait $pipid
elapsed=$(( $(date +%s) - t0 )); [ $elapsed -gt 0 ] || elapsed=1

echo "== pool maps"; grep -v '^$' "$tmp/map.out" | tail -20
echo "== pi runs"; grep -v ': ok ' "$tmp/pi.out"
pis=$(grep -c . "$tmp/pi.out"); piok=$(grep -c ': ok ' "$tmp/pi.out")
reruns=$(sed -n 's/.*(reruns \([0-9]*\))$/\1/p' "$tmp/pi.out" | awk '{s += $1} END {print s + 0}')
hangs=$(grep -c 'HANG' "$tmp/pi.out"); wrongpi=$(grep -c 'WRONG' "$tmp/pi.out")
wrongmap=$(sed -n 's/^rounds [0-9]* wrong \([0-9]*\).*/\1/p' "$tmp/map.out")
echo "== summary: ${elapsed}s, $kills worker kills, $stops stops, $server_kills fork-server kills"
echo "pi runs $pis, ok $piok, hangs $hangs, wrong counts $wrongpi ($pi_kills kills hit them, $reruns tasks re-run); map driver exit $maprc, wrong rounds ${wrongmap:-?}"
echo "kills survived per minute: $(( (kills + server_kills) * 60 / elapsed ))"
[ "$hangs" = 0 ] && [ "$wrongpi" = 0 ] && [ "$maprc" = 0 ] && [ "${wrongmap:-1}" = 0 ]
