#!/usr/bin/env bash
# Stops the test bed setup.sh started, by the PIDs it recorded and nothing else: setup.sh runs
# every service in its own session, so a recorded PID names the session of that service's
# processes. Services stop in reverse dependency order. Packages stay installed.
#
#   --purge   also delete the databases, keys, images and logs (the next setup starts afresh)
#
#   OSBED_DIR  as for setup.sh (default /tmp/osbed)
set -uo pipefail
BED=${OSBED_DIR:-/tmp/osbed}
ORDER=(nova-compute nova-api nova-scheduler nova-conductor neutron-server glance-api placement
       keystone rabbitmq epmd mariadb)
T0=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '+%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); }

alive() { # PID: exists and is not a zombie (PID 1 here may not reap)
  [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}
members() { ps -o pid= --sid "$1" 2>/dev/null | tr -d ' '; }

stop() { # NAME
  local name=$1 f="$BED/run/$1.pid" sid pids p left i
  [ -s "$f" ] || return 0
  sid=$(cat "$f")
  pids=$(members "$sid" | tr '\n' ' ')
  if [ -z "${pids// /}" ]; then rm -f "$f"; return 0; fi
  if [ "$name" = rabbitmq ]; then
    kill -TERM "$sid" 2>/dev/null   # its start script traps TERM and stops the node cleanly
  else
    kill -TERM $pids 2>/dev/null
  fi
  for ((i = 0; i < 150; i++)); do   # up to 30 s
    left=""
    for p in $pids; do alive "$p" && left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.2
  done
  if [ -n "$left" ]; then
    kill -KILL $left 2>/dev/null
    echo "[osbed] $(elapsed) $name: killed$left after 30 s"
  fi
  rm -f "$f"
  echo "[osbed] $(elapsed) stopped $name (pids $pids)"
}

[ -d "$BED/run" ] || { echo "[osbed] nothing to stop under $BED"; exit 0; }
for n in "${ORDER[@]}"; do stop "$n"; done
echo "=== teardown $(date -u +%FT%TZ) $(elapsed)" >> "$BED/timings.log" 2>/dev/null

if [ "${1:-}" = --purge ]; then
  dbdir=$(cat "$BED/etc/dbdir" 2>/dev/null || true)
  case "$dbdir" in /dev/shm/osbed*|"$BED"/*) rm -rf "$dbdir" ;; esac
  rm -rf "${BED:?}"/{rabbitmq,keystone,glance,neutron,nova,state,log,run,etc,pylib} \
         "$BED"/clouds.yaml "$BED"/admin.env "$BED"/demo.env
  echo "[osbed] purged $BED"
fi
