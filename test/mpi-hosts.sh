#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# mpi-hosts.sh - manyhands-mpi across several hosts, made on this machine.
#
# Each "host" is a network namespace with its own UTS namespace (so its own
# host name), joined to the others by a bridge; Open MPI's launcher reaches a
# host through an rsh agent that enters that host's namespaces instead of
# ssh.  The ranks really talk TCP across the bridge, and each names the host
# it runs on, as on a cluster.  What it checks (one check per call):
#
#   count     the same count as one process on one host (2 and 3 hosts)
#   killed    a rank SIGKILLed on another host is named with that host
#   sigint    Ctrl-C on the launcher stops every rank on every host
#
# Usage: mpi-hosts.sh BUILD_DIR CHECK.  Needs root, ip(8) with netns,
# unshare(1) and Open MPI's mpiexec; exits 77 (skipped) when one is missing
# or the kernel refuses namespaces, saying why.  Everything it makes (namespaces,
# links, files) is named after its own pid and removed on exit.
set -u
build=${1:?usage: mpi-hosts.sh BUILD_DIR count|killed|sigint}
check=${2:?usage: mpi-hosts.sh BUILD_DIR count|killed|sigint}
cli="$build/manyhands"
mpicli="$build/manyhands-mpi"

skip() { echo "skipped: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root for network namespaces"
command -v ip >/dev/null || skip "no ip(8) (Debian: iproute2)"
command -v unshare >/dev/null || skip "no unshare(1)"
command -v mpiexec >/dev/null || skip "no mpiexec (Debian: openmpi-bin)"
[ -x "$mpicli" ] || skip "manyhands-mpi not built (MPI not found)"
mpiexec --version 2>&1 | grep -qiE "open ?mpi|openrte" || skip "not Open MPI"

# Names: short (interface names are at most 15 bytes), unique per run.
tag=$(( $$ % 100000 ))
net=$(( ($$ % 200) + 20 ))     # 10.231.<net>.0/24
br="mhb$tag"
tmp=$(mktemp -d)
hosts=()

cleanup() {
  # Whatever a failed check left: every process in our namespaces.
  for h in "${hosts[@]}"; do
    for p in $(ip netns pids "$h" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$h" 2>/dev/null
  done
  ip link del "$br" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

ip link add "$br" type bridge 2>/dev/null || skip "the kernel refused a bridge"
ip addr add "10.231.$net.1/24" dev "$br"
ip link set "$br" up
for i in 1 2 3; do
  h="mhh$tag-$i"
  ip netns add "$h" 2>/dev/null || skip "the kernel refused a network namespace"
  hosts+=("$h")
  ip link add "mhv$tag$i" type veth peer name eth0 netns "$h" ||
    skip "the kernel refused a veth pair"
  ip link set "mhv$tag$i" master "$br" up
  ip netns exec "$h" ip addr add "10.231.$net.1$i/24" dev eth0
  ip netns exec "$h" ip link set eth0 up
  ip netns exec "$h" ip link set lo up
done

# The rsh agent: "agent HOST COMMAND..." runs COMMAND (a shell string, as ssh
# takes it) in HOST's namespaces, with HOST's name as its host name.
cat > "$tmp/agent" <<EOF
#!/bin/sh
host=\$1; shift
while [ "\${1#-}" != "\$1" ]; do shift; done   # ssh-style options, if any
case "\$host" in
  10.231.$net.11) ns=mhh$tag-1 ;;
  10.231.$net.12) ns=mhh$tag-2 ;;
  10.231.$net.13) ns=mhh$tag-3 ;;
  *) echo "agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" unshare --uts /bin/sh -c 'hostname "\$0"; exec /bin/sh -c "\$1"' "\$ns" "\$*"
EOF
chmod +x "$tmp/agent"
for i in 1 2 3; do echo "10.231.$net.1$i slots=1"; done > "$tmp/hostfile"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Launch on the hosts only (the launcher stays on this machine, as a head
# node), over the bridge only, and never by ssh.
mpirun_on() {
  local n=$1; shift
  mpiexec -n "$n" --hostfile "$tmp/hostfile" --map-by node --bind-to none \
    --mca plm_rsh_agent "$tmp/agent" \
    --mca oob_tcp_if_include "10.231.$net.0/24" \
    --mca btl tcp,self --mca btl_tcp_if_include "10.231.$net.0/24" \
    --timeout 120 "$@"
}

json_u64() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" | head -n 1; }

case "$check" in
count)
  want=$("$cli" pi 3e9 1 --json | json_u64 inside)
  [ -n "$want" ] || fail "the one-process run printed no count"
  for n in 2 3; do
    out=$(mpirun_on "$n" "$mpicli" pi 3e9 1 --backend mpi --json 2>"$tmp/err") ||
      fail "$n hosts: mpiexec failed: $(cat "$tmp/err")"
    got=$(echo "$out" | json_u64 inside)
    [ "$got" = "$want" ] || fail "$n hosts: inside $got, one process $want"
    echo "$n hosts: inside $got = one process"
  done
  # The ranks did run on the other hosts: each names its own.
  names=$(mpirun_on 3 /bin/sh -c 'hostname' 2>&1 | sort | tr '\n' ' ')
  [ "$names" = "mhh$tag-1 mhh$tag-2 mhh$tag-3 " ] || fail "ranks ran on: $names"
  ;;
killed)
  # A long run; kill rank 2 on the third host once it has counted a while.
  mpirun_on 3 "$mpicli" pi 1e13 1 --backend mpi --quiet >"$tmp/out" 2>"$tmp/err" &
  job=$!
  victim=""
  for _ in $(seq 1 400); do
    for p in $(ip netns pids "mhh$tag-3" 2>/dev/null); do
      # (The rank's sentinel is a fork of it, with the same environment.)
      [ "$(cat "/proc/$p/comm" 2>/dev/null)" = mh-sentinel ] && continue
      if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=2" &&
         [ "$(readlink "/proc/$p/exe")" = "$(readlink -f "$mpicli")" ]; then
        victim=$p
      fi
    done
    [ -n "$victim" ] && break
    sleep 0.05
  done
  [ -n "$victim" ] || { kill $job; fail "rank 2 never started on host 3: $(cat "$tmp/err")"; }
  sleep 1
  kill -KILL "$victim"
  wait $job
  rc=$?
  [ $rc -ne 0 ] || fail "mpiexec exited 0 after a rank was killed"
  want="MPI rank 2 (pid $victim on mhh$tag-3) died"
  grep -qF "$want" "$tmp/err" || fail "no \"$want\" in: $(cat "$tmp/err")"
  echo "named: $(grep -F "$want" "$tmp/err")"
  ;;
sigint)
  # Ctrl-C reaches the launcher's process group, as from a terminal.
  set -m
  mpirun_on 3 "$mpicli" pi 1e13 1 --backend mpi --quiet >"$tmp/out" 2>"$tmp/err" &
  job=$!
  set +m
  for _ in $(seq 1 400); do
    n=0
    for h in "${hosts[@]}"; do
      for p in $(ip netns pids "$h" 2>/dev/null); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$mpicli")" ] && n=$((n + 1))
      done
    done
    [ $n -ge 3 ] && break
    sleep 0.05
  done
  [ $n -ge 3 ] || { kill $job; fail "the 3 ranks never all started: $(cat "$tmp/err")"; }
  sleep 0.5
  t0=$(date +%s.%N)
  kill -INT -- -$job
  wait $job
  t1=$(date +%s.%N)
  left=0
  for _ in $(seq 1 50); do
    left=0
    for h in "${hosts[@]}"; do
      left=$((left + $(ip netns pids "$h" 2>/dev/null | wc -l)))
    done
    [ $left -eq 0 ] && break
    sleep 0.1
  done
  [ $left -eq 0 ] || fail "$left processes left on the hosts after Ctrl-C"
  echo "every rank on every host ended; mpiexec returned $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s after SIGINT"
  ;;
*) echo "unknown check $check"; exit 2 ;;
esac
echo "ok: $check"
