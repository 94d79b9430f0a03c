#!/usr/bin/env bash
# What the kernel asks of the daemon, counted in its debug log (--debug
# prints every FUSE request): closing a file costs no FLUSH round trip (the
# first is answered ENOSYS and the kernel sends no more), and a file read
# once is read again from the page cache, without a READ.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$@"

make_fs
DEBUG_LOG=$WORK/debug.log
"$FRUGALFS" mount --debug "$META" "$MNT" 2>"$DEBUG_LOG" &
MOUNT_JOB=$!
for _ in $(seq 100); do is_mounted "$MNT" && break; sleep 0.1; done
is_mounted "$MNT" || fail "the --debug mount did not come up: $(tail -5 "$DEBUG_LOG")"

FILES=40
log "create, write and close $FILES files; open, read and close each"
for i in $(seq "$FILES"); do echo "file $i" >"$MNT/f$i"; done
for i in $(seq "$FILES"); do
  [ "$(cat "$MNT/f$i")" = "file $i" ] || fail "f$i reads back wrong"
done

log "read a 2 MiB file twice, each time in a process of its own"
head -c $((2 << 20)) /dev/urandom >"$WORK/big"
cp "$WORK/big" "$MNT/big"
pids=()  # the two readers' process ids
for _ in 1 2; do
  sh -c 'echo $$ >"$1"; exec cat "$2"' sh "$WORK/reader.pid" "$MNT/big" >"$WORK/big.back"
  cmp "$WORK/big" "$WORK/big.back" || fail "big reads back wrong"
  pids+=("$(cat "$WORK/reader.pid")")
done
stop_mount
wait "$MOUNT_JOB" || fail "the --debug mount exited with status $?"

# count OPCODE [PID]: requests of that opcode in the debug log (from PID).
count() {
  local pattern="opcode: $1 "
  [ $# -gt 1 ] && pattern="opcode: $1 .*pid: $2\$"
  grep -c -- "$pattern" "$DEBUG_LOG" || true
}
releases=$(count RELEASE)
[ "$releases" -ge $((2 * FILES)) ] ||
  fail "the debug log shows $releases RELEASE requests for $((2 * FILES)) closes: is it the request log?"
flushes=$(count FLUSH)
[ "$flushes" -le 1 ] || fail "$flushes FLUSH requests for $((2 * FILES)) closes: expected at most the first"
first_reads=$(count READ "${pids[0]}")
[ "$first_reads" -ge 1 ] || fail "the first read of big sent no READ request: is it the request log?"
assert_eq "$(count READ "${pids[1]}")" 0 "READ requests of the second read of big"
log "ok: $releases releases, $flushes flush, $first_reads reads then none"
