# SPDX-License-Identifier: MIT
# bench/common.bash - what the bench/<area>.sh scripts share.  Sourced by
# them, never run on its own (bench/run runs only the *.sh files).
#
#   bench_median              stdin: one number a line; prints the median
#                             (the mean of the middle two for an even count,
#                             0 for none)
#   bench_median_file F COL   the median of column COL of file F
#   bench_median_cols CMD...  runs CMD $runs times; prints the median of each
#                             column of its one-line outputs
#   bench_median_lines        stdin: lines of numbers; prints the median of
#                             each column ("- - -" for no line)
#   bench_start NAME BINARY   fails unless $bin/BINARY is there; sets have_py
#                             (1 when python3 is on PATH), tmp (a directory
#                             removed at exit) and load0 (the load average now)
#   record FILE               stdin: a bench line; appends its fields 1 and 3
#                             to FILE

bench_median() {
  sort -g | awk '{v[NR] = $1}
    END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

bench_median_file() { cut -d' ' -f"$2" "$1" | bench_median; }

bench_median_lines() {
  python3 -c '
import sys, statistics
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
print(" ".join(str(statistics.median(c)) for c in zip(*rows)) if rows else "- - -")'
}

bench_median_cols() {
  local out=""
  for _ in $(seq "$runs"); do out+="$("$@")"$'\n'; done
  printf '%s' "$out" | bench_median_lines
}

bench_start() {
  if [ ! -x "$bin/$2" ]; then
    echo "$1.sh: $bin/$2 not found (run bench/run $1)" >&2
    exit 1
  fi
  have_py=1
  command -v python3 >/dev/null || have_py=0
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  load0=$(cut -d' ' -f1 /proc/loadavg)
}

record() { awk '{print $1, $3}' >>"$1"; }
