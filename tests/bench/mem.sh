#!/usr/bin/env bash
# mem.sh PID...: prints "pss_kib=N rss_kib=N" summed over the given processes (from
# /proc/PID/smaps_rollup). PSS splits shared pages between the processes that map them,
# so the sum over a master and its workers counts every page once; RSS counts a shared
# page in every process. Both are user-space memory: socket buffers live in the kernel.
set -u
pss=0
rss=0
for p in "$@"; do
    f=/proc/$p/smaps_rollup
    [ -r "$f" ] || continue
    read -r a b < <(awk '/^Pss:/ {p = $2} /^Rss:/ {r = $2} END {print p + 0, r + 0}' "$f")
    pss=$((pss + a))
    rss=$((rss + b))
done
echo "pss_kib=$pss rss_kib=$rss"
