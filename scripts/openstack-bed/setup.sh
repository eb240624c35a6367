#!/usr/bin/env bash
# Brings up a small, real OpenStack (Debian 12's Zed packages) for the e2e suite
# test/e2e/openstack-real.test.ts: MariaDB, RabbitMQ, Keystone, Glance, Placement, Neutron (ML2,
# no agents) and Nova (api, conductor, scheduler, compute on fake.FakeDriver). Every socket is on
# 127.0.0.1; the documentation ranges in Neutron are records only, no packet goes there.
#
# Idempotent: a re-run starts only what is not running and skips finished migrations and
# fixtures. Needs root and no systemd. Stop it with teardown.sh (by the PIDs recorded here).
#
#   OSBED_DIR       state, configuration, logs, clouds.yaml   (default /tmp/osbed)
#   OSBED_DB_DIR    MariaDB datadir                           (default /dev/shm/osbed-mysql)
#   OSBED_PASSWORD  password of every account of the bed      (default osbed-secret)
#
# Writes $OSBED_DIR/clouds.yaml (clouds osbed-admin, osbed-demo), demo.env and admin.env
# (OS_* variables), and appends its step timings to $OSBED_DIR/timings.log.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BED=${OSBED_DIR:-/tmp/osbed}
DBDIR=${OSBED_DB_DIR:-/dev/shm/osbed-mysql}   # tmpfs: migrations are fsync-bound, data disposable
PW=${OSBED_PASSWORD:-osbed-secret}
PY=/usr/bin/python3                            # Debian's interpreter, whatever is first on PATH
IP=127.0.0.1
KS=http://$IP:5000/v3
DB="mysql+pymysql://osbed:$PW@$IP"
RABBIT="rabbit://guest:guest@$IP:5672/"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export OS_CLIENT_CONFIG_FILE=$BED/clouds.yaml OSBED_PASSWORD=$PW

[ "$(id -u)" = 0 ] || { echo "setup.sh must run as root" >&2; exit 1; }
umask 022
mkdir -p "$BED"/{etc,log,run,pylib,state}
# MariaDB runs as user mysql and must reach run/ and log/; the passwords stay in etc/ and the
# credential files (0600)
chmod 755 "$BED"; chmod 700 "$BED/etc"

# ---------------------------------------------------------------- timings
T0=$(date +%s%N)
step() { # step MESSAGE: one timed line on stdout and in timings.log
  local ms=$(( ($(date +%s%N) - T0) / 1000000 ))
  printf '[osbed] %s +%d.%ds %s\n' "$(date -u +%T)" $((ms / 1000)) $((ms % 1000 / 100)) "$*" | tee -a "$BED/timings.log"
}
echo "=== setup $(date -u +%FT%TZ)" >> "$BED/timings.log"
declare -A JOBS=()
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; echo "$c"; done; }
fail() {
  step "FAILED: $*"
  # stop the migration jobs still running (the services they started are recorded for teardown)
  local j p
  for j in "${JOBS[@]}"; do
    for p in $(descendants "$j") "$j"; do kill "$p" 2>/dev/null || true; done
  done
  exit 1
}
trap 'fail "interrupted"' TERM INT

# ---------------------------------------------------------------- packages
bash "$ROOT/.ci/install-openstack-bed.sh" > "$BED/log/apt.log" 2>&1 || { tail -30 "$BED/log/apt.log" >&2; fail "package install"; }
step "packages: $(tail -1 "$BED/log/apt.log")"

# ---------------------------------------------------------------- process bookkeeping
# Each service runs in its own session (setsid), so its PID is also its process group: teardown
# signals exactly these groups and nothing found by name.
running() { # NAME: its recorded process is alive (a zombie is not)
  local f=$BED/run/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -e "/proc/$pid" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null
}
launch() { # NAME CMD...: start in the background unless running; log to log/NAME.out
  local name=$1; shift
  if running "$name"; then echo "[osbed] $name already running (pid $(cat "$BED/run/$name.pid"))"; return 0; fi
  setsid "$@" >> "$BED/log/$name.out" 2>&1 < /dev/null &
  echo $! > "$BED/run/$name.pid"
}
tcp_ready() { # PORT SECONDS
  local until=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/$IP/$1") 2>/dev/null; do
    ((SECONDS < until)) || { echo "nothing listens on $IP:$1 after $2 s" >&2; return 1; }
    sleep 0.1
  done
}
http_ready() { # URL SECONDS: any HTTP answer (a 401 is an answer)
  local until=$((SECONDS + $2))
  until curl -s -o /dev/null -m 3 "$1"; do
    ((SECONDS < until)) || { echo "$1 does not answer after $2 s" >&2; return 1; }
    sleep 0.2
  done
}
# A migration that finished once is not re-run (each *-manage costs ~5 s of imports). The marks
# live in the datadir, so a fresh database (e.g. tmpfs after a reboot) migrates again.
migrated() { [ -e "$DBDIR/osbed-migrated-$1" ]; }
mark_migrated() { touch "$DBDIR/osbed-migrated-$1"; }

# ---------------------------------------------------------------- configuration
# Every service authenticates its callers against Keystone and calls the others as admin.
service_auth() { # SECTION
  cat <<EOF
[$1]
auth_type = password
auth_url = $KS
www_authenticate_uri = $KS
username = admin
password = $PW
user_domain_name = Default
project_name = admin
project_domain_name = Default
region_name = RegionOne
EOF
}

mkdir -p "$BED/keystone/fernet-keys" "$BED/keystone/credential-keys"
chmod 700 "$BED/keystone/fernet-keys" "$BED/keystone/credential-keys"
cat > "$BED/etc/keystone.conf" <<EOF
[DEFAULT]
log_file = $BED/log/keystone.log
[database]
connection = $DB/keystone
[identity]
# bcrypt cost 4, not 12: each password authentication is CPU on a 2-core machine
password_hash_rounds = 4
[token]
provider = fernet
# 24 h, like Open Telekom Cloud's IAM tokens (keystone's default is 1 h)
expiration = 86400
[fernet_tokens]
key_repository = $BED/keystone/fernet-keys
[fernet_receipts]
# bootstrap checks this repository too (default /etc/keystone/fernet-keys/)
key_repository = $BED/keystone/fernet-keys
[credential]
key_repository = $BED/keystone/credential-keys
EOF

{ cat <<EOF
[DEFAULT]
log_file = $BED/log/placement.log
[placement_database]
connection = $DB/placement
[api]
auth_strategy = keystone
EOF
service_auth keystone_authtoken; } > "$BED/etc/placement.conf"

mkdir -p "$BED/glance/images" "$BED/glance/staging" "$BED/glance/tasks" "$BED/glance/lock"
{ cat <<EOF
[DEFAULT]
bind_host = $IP
bind_port = 9292
workers = 1
log_file = $BED/log/glance-api.log
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $BED/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $BED/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $BED/glance/tasks
[database]
connection = $DB/glance
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $BED/glance/lock
EOF
service_auth keystone_authtoken; } > "$BED/etc/glance-api.conf"

# Neutron without agents: the bind-every-port mechanism driver, registered by an entry point
# in a dist-info next to it (PYTHONPATH=$BED/pylib for neutron-server only).
cp "$HERE/ctd_osbed_mech.py" "$BED/pylib/"
mkdir -p "$BED/pylib/ctd_osbed_mech-1.0.dist-info" "$BED/neutron/lock"
printf 'Metadata-Version: 2.1\nName: ctd-osbed-mech\nVersion: 1.0\n' > "$BED/pylib/ctd_osbed_mech-1.0.dist-info/METADATA"
printf '[neutron.ml2.mechanism_drivers]\nctd_bind_every_port = ctd_osbed_mech:BindEveryPort\n' \
  > "$BED/pylib/ctd_osbed_mech-1.0.dist-info/entry_points.txt"
{ cat <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins = router
bind_host = $IP
bind_port = 9696
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
transport_url = $RABBIT
auth_strategy = keystone
api_paste_config = /etc/neutron/api-paste.ini
state_path = $BED/neutron
log_file = $BED/log/neutron-server.log
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = $DB/neutron
[oslo_concurrency]
lock_path = $BED/neutron/lock
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = ctd_bind_every_port
extension_drivers = port_security
[ml2_type_flat]
flat_networks = public
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
enable_security_group = true
EOF
service_auth keystone_authtoken; } > "$BED/etc/neutron.conf"

mkdir -p "$BED/nova/state" "$BED/nova/instances" "$BED/nova/lock"
{ cat <<EOF
[DEFAULT]
host = osbed-compute
my_ip = $IP
transport_url = $RABBIT
compute_driver = fake.FakeDriver
enabled_apis = osapi_compute
osapi_compute_listen = $IP
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
state_path = $BED/nova/state
instances_path = $BED/nova/instances
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[api]
auth_strategy = keystone
[api_database]
connection = $DB/nova_api
[database]
connection = $DB/nova
[conductor]
workers = 1
[scheduler]
workers = 1
# nova-scheduler maps a new compute host into cell1 by itself (no nova-manage discover_hosts)
discover_hosts_in_cells_interval = 2
[oslo_concurrency]
lock_path = $BED/nova/lock
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
[glance]
region_name = RegionOne
EOF
service_auth keystone_authtoken; service_auth placement; service_auth neutron; } > "$BED/etc/nova.conf"
printf '[database]\nconnection = %s\n' "$DB/nova_cell0" > "$BED/etc/nova-cell0.conf"

cat > "$BED/clouds.yaml" <<EOF
# The real-OpenStack test bed (scripts/openstack-bed/setup.sh). Test credentials only.
clouds:
  osbed-admin:
    auth: {auth_url: "$KS", username: admin, password: "$PW", project_name: admin,
           user_domain_name: Default, project_domain_name: Default}
    region_name: RegionOne
    identity_api_version: 3
  osbed-demo:
    auth: {auth_url: "$KS", username: demo, password: "$PW", project_name: demo,
           user_domain_name: Default, project_domain_name: Default}
    region_name: RegionOne
    identity_api_version: 3
EOF
for who in admin demo; do
  cat > "$BED/$who.env" <<EOF
OS_AUTH_URL=$KS
OS_IDENTITY_API_VERSION=3
OS_REGION_NAME=RegionOne
OS_USERNAME=$who
OS_PASSWORD=$PW
OS_PROJECT_NAME=$who
OS_USER_DOMAIN_NAME=Default
OS_PROJECT_DOMAIN_NAME=Default
EOF
done
chmod 600 "$BED/clouds.yaml" "$BED/admin.env" "$BED/demo.env"
step "configuration written"

# ---------------------------------------------------------------- MariaDB
mkdir -p "$DBDIR" "$BED/run/mysql"
chown mysql:mysql "$DBDIR" "$BED/run/mysql"
echo "$DBDIR" > "$BED/etc/dbdir"
touch "$BED/log/mysqld.log"; chown mysql:mysql "$BED/log/mysqld.log"
cat > "$BED/etc/my.cnf" <<EOF
[mysqld]
user = mysql
datadir = $DBDIR
socket = $BED/run/mysql/mysqld.sock
pid-file = $BED/run/mysql/mysqld.pid
bind-address = $IP
port = 3306
skip-name-resolve
log-error = $BED/log/mysqld.log
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 0
performance_schema = OFF
max_connections = 500
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
[client]
socket = $BED/run/mysql/mysqld.sock
EOF
sql() { mariadb --defaults-file="$BED/etc/my.cnf" -uroot "$@"; }
if [ ! -d "$DBDIR/mysql" ]; then
  rm -f "$DBDIR"/osbed-migrated-*
  mariadb-install-db --defaults-file="$BED/etc/my.cnf" --user=mysql --skip-test-db > "$BED/log/mariadb-install.log" 2>&1 \
    || fail "mariadb-install-db (see $BED/log/mariadb-install.log)"
fi
launch mariadb mariadbd --defaults-file="$BED/etc/my.cnf"
until="$((SECONDS + 60))"
until sql -e 'SELECT 1' > /dev/null 2>&1; do
  ((SECONDS < until)) && running mariadb || fail "mariadb (see $BED/log/mariadb.out)"
  sleep 0.2
done
sql <<EOF
CREATE DATABASE IF NOT EXISTS keystone; CREATE DATABASE IF NOT EXISTS glance;
CREATE DATABASE IF NOT EXISTS placement; CREATE DATABASE IF NOT EXISTS neutron;
CREATE DATABASE IF NOT EXISTS nova_api; CREATE DATABASE IF NOT EXISTS nova;
CREATE DATABASE IF NOT EXISTS nova_cell0;
CREATE USER IF NOT EXISTS 'osbed'@'$IP' IDENTIFIED BY '$PW';
GRANT ALL PRIVILEGES ON *.* TO 'osbed'@'$IP';
EOF
step "mariadb up"

# ---------------------------------------------------------------- RabbitMQ (no plugins)
mkdir -p "$BED/rabbitmq" "$BED/log/rabbitmq"
[ -e "$BED/rabbitmq/enabled_plugins" ] || echo '[].' > "$BED/rabbitmq/enabled_plugins"
RABBIT_ENV=(env HOME="$BED/rabbitmq" RABBITMQ_NODENAME=rabbit@localhost
  RABBITMQ_NODE_IP_ADDRESS=$IP RABBITMQ_NODE_PORT=5672 RABBITMQ_DIST_PORT=25672
  ERL_EPMD_ADDRESS=$IP ERL_EPMD_PORT=4369
  RABBITMQ_MNESIA_BASE="$BED/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$BED/log/rabbitmq"
  RABBITMQ_ENABLED_PLUGINS_FILE="$BED/rabbitmq/enabled_plugins"
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
launch epmd "${RABBIT_ENV[@]}" epmd -address $IP -port 4369
# rabbitmq would start its own (daemonized, untracked) epmd if ours were not listening yet
tcp_ready 4369 30 || fail "epmd"
launch rabbitmq "${RABBIT_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server

# ---------------------------------------------------------------- migrations, in parallel
# Migrations dominate bring-up; each job migrates one service, then starts it. Keystone runs in
# the foreground meanwhile because everything else needs it.
UWSGI=(uwsgi --plugin python3 --processes 1 --threads 4 --die-on-term --need-app
       --buffer-size 65535 --disable-logging
       # keystoneauth reuses connections, which uwsgi's plain http-socket resets
       --add-header "Connection: close")
job_placement() {
  migrated placement || { placement-manage --config-file "$BED/etc/placement.conf" db sync; mark_migrated placement; }
  launch placement env OS_PLACEMENT_CONFIG_DIR="$BED/etc" OS_PLACEMENT_CONFIG_FILES=placement.conf \
    "${UWSGI[@]}" --http-socket $IP:8778 --wsgi-file /usr/bin/placement-api
}
job_glance() {
  migrated glance || { glance-manage --config-file "$BED/etc/glance-api.conf" db_sync; mark_migrated glance; }
  launch glance-api glance-api --config-file "$BED/etc/glance-api.conf"
}
job_neutron() {
  migrated neutron || { neutron-db-manage --config-file "$BED/etc/neutron.conf" upgrade heads; mark_migrated neutron; }
  tcp_ready 5672 180
  launch neutron-server env PYTHONPATH="$BED/pylib" neutron-server --config-file "$BED/etc/neutron.conf"
}
# Debian ships /usr/bin wrappers only for the nova services whose packages are installed; the
# others (python3-nova, pulled in by nova-api) run from their modules.
nova_main() { echo "import sys; from nova.cmd.$1 import main; sys.argv[0] = 'nova-$1'; sys.exit(main())"; }
job_nova() {
  local nm=(nova-manage --config-file "$BED/etc/nova.conf")
  if ! migrated nova; then
    "${nm[@]}" api_db sync
    "${nm[@]}" cell_v2 map_cell0 --database_connection "$DB/nova_cell0"
    "${nm[@]}" cell_v2 create_cell --name cell1 || [ $? = 2 ]   # 2: cell1 exists
    "${nm[@]}" --config-file "$BED/etc/nova-cell0.conf" db sync --local_cell & local cell0=$!
    "${nm[@]}" db sync --local_cell
    wait $cell0
    mark_migrated nova
  fi
  tcp_ready 5672 180
  launch nova-conductor "$PY" -c "$(nova_main conductor)" --config-file "$BED/etc/nova.conf" --log-file "$BED/log/nova-conductor.log"
  launch nova-scheduler "$PY" -c "$(nova_main scheduler)" --config-file "$BED/etc/nova.conf" --log-file "$BED/log/nova-scheduler.log"
  launch nova-api nova-api --config-file "$BED/etc/nova.conf" --log-file "$BED/log/nova-api.log"
}
for j in placement glance neutron nova; do
  ( set -euo pipefail; "job_$j" ) > "$BED/log/job-$j.log" 2>&1 &
  JOBS[$j]=$!
done

# ---------------------------------------------------------------- Keystone
KM=(keystone-manage --config-file "$BED/etc/keystone.conf")
if ! migrated keystone; then
  "${KM[@]}" db_sync > "$BED/log/keystone-manage.log" 2>&1 || fail "keystone db_sync (see $BED/log/keystone-manage.log)"
  mark_migrated keystone
  step "keystone migrated"
fi
# What fernet_setup/credential_setup write (key 0 staged, key 1 primary), without two more
# 5-second keystone-manage imports.
for d in fernet-keys credential-keys; do
  for k in 0 1; do
    [ -s "$BED/keystone/$d/$k" ] || $PY -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode(), end="")' > "$BED/keystone/$d/$k"
  done
  chmod 600 "$BED/keystone/$d"/*
done
if ! migrated keystone-bootstrap; then
  "${KM[@]}" bootstrap --bootstrap-password "$PW" --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "$KS/" --bootstrap-internal-url "$KS/" --bootstrap-public-url "$KS/" \
    >> "$BED/log/keystone-manage.log" 2>&1 || fail "keystone bootstrap (see $BED/log/keystone-manage.log)"
  mark_migrated keystone-bootstrap
  step "keystone bootstrapped"
fi
launch keystone env OS_KEYSTONE_CONFIG_FILES="$BED/etc/keystone.conf" \
  "${UWSGI[@]}" --http-socket $IP:5000 --wsgi-file /usr/bin/keystone-wsgi-public
http_ready "$KS" 90 || fail "keystone"
step "keystone answering"

if [ ! -e "$BED/state/identity.done" ]; then
  $PY "$HERE/fixture.py" identity || fail "identity fixture"
  touch "$BED/state/identity.done"
fi
step "catalog, demo project and user"

for j in placement glance neutron nova; do
  wait "${JOBS[$j]}" || { tail -30 "$BED/log/job-$j.log" >&2; fail "$j (see $BED/log/job-$j.log)"; }
  step "$j migrated and started"
done
for url in http://$IP:8778/ http://$IP:9292/ http://$IP:9696/ http://$IP:8774/; do
  http_ready "$url" 180 || fail "$url"
done
step "all APIs answering"

# nova-compute reports its inventory to placement as it starts: it needs the catalog and placement.
launch nova-compute "$PY" -c "$(nova_main compute)" --config-file "$BED/etc/nova.conf" --log-file "$BED/log/nova-compute.log"

# The scheduler maps the compute host into cell1 once nova-compute has registered it.
until="$((SECONDS + 300))"
until sql -N -e "SELECT 1 FROM nova_api.host_mappings WHERE host='osbed-compute'" | grep -q 1; do
  ((SECONDS < until)) || fail "the compute host was never mapped into cell1 (see $BED/log/nova-compute.log)"
  running nova-compute || fail "nova-compute exited (see $BED/log/nova-compute.log)"
  sleep 0.5
done
step "compute host mapped"

# ---------------------------------------------------------------- fixture
[ -s "$BED/state/debian-12.raw" ] || head -c 1048576 /dev/zero > "$BED/state/debian-12.raw"
OSBED_IMAGE_FILE="$BED/state/debian-12.raw" $PY "$HERE/fixture.py" resources || fail "resources fixture"
step "fixture: flavors, image, public network, bastion"

# ---------------------------------------------------------------- every socket on loopback
pids=()
for f in "$BED"/run/*.pid; do
  pids+=($(ps -o pid= --sid "$(cat "$f")" 2>/dev/null || true))
done
pattern=$(printf 'pid=%s,|' "${pids[@]}"); pattern=${pattern%|}
exposed=$(ss -Htlnup | grep -E "$pattern" | awk '{print $5}' | grep -Ev '^(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):' || true)
[ -z "$exposed" ] || fail "a bed process listens outside loopback: $exposed"
rss=0
for p in "${pids[@]}"; do rss=$((rss + $(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
step "setup complete: ${#pids[@]} processes, every listener on 127.0.0.1, RSS $((rss / 1024)) MiB"
echo "clouds.yaml: $BED/clouds.yaml (clouds osbed-demo, osbed-admin); env files: $BED/demo.env, $BED/admin.env"
