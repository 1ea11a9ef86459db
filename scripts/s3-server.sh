#!/usr/bin/env bash
# A throwaway S3 server for tests and CI: Ceph RADOS Gateway (radosgw 16, Debian's packages) on
# one monitor and one OSD, all on 127.0.0.1, all state inside STATE_DIR. It is the server of the
# systems Kiln replaces, and it checks SigV4 signatures, Content-MD5 and multipart ETags, which
# fake servers do not. The recipe and the numbers below were measured on Debian 12 (radosgw 16.2.15); the RGW
# quirks Kiln handles are in docs/architecture.md#object-store.
#
#   scripts/s3-server.sh start  STATE_DIR   install if missing, create or restart (idempotent);
#                                           prints the endpoint and the keys
#   scripts/s3-server.sh stop   STATE_DIR   stop radosgw, OSD, monitor (by their recorded PIDs)
#   scripts/s3-server.sh status STATE_DIR   exit 0 when S3 answers a signed request
#   scripts/s3-server.sh env    STATE_DIR   export KILN_S3_URL=… (and KILN_STORE, the same) KILN_S3_ACCESS_KEY=… KILN_S3_SECRET_KEY=…
#
# Env: S3_CEPH_STORE=bluestore (default; a sparse file) or memstore (objects in RAM, 3 s faster to
# create); S3_CEPH_SIZE_GB=100, the apparent size of the sparse BlueStore file; S3_RGW_BIND=ADDR
# (at create) makes radosgw listen there instead of 127.0.0.1 (the fault tests run it in a network
# namespace of its own, reached at its own address: bind 0.0.0.0 there, never on a shared host).
# Needs root (apt-get, and the daemons run as the caller). Measured here: create 6–8 s, restart
# 4–8 s, stop ~1 s; the install on a fresh machine adds ~25–40 s.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status|env STATE_DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
conf=$dir/ceph.conf
DAEMONS=(rgw.a osd.0 mon.a) # in stop order (s3.md: radosgw, OSD, mon)
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

say() { echo "s3-server: $*" >&2; }
die() {
  say "$*"
  exit 1
}

have_ceph() { command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; }

install_if_missing() {
  have_ceph && return
  [ "$(id -u)" -eq 0 ] || die "radosgw, ceph-mon and ceph-osd are not installed, and installing them needs root"
  # One apt at a time: the S3 and PostgreSQL scripts may be started together (tests do). The lock
  # is closed before any daemon starts, or the daemon would inherit it and hold it for its life.
  exec 9>/var/lock/kiln-apt.lock
  flock 9
  if ! have_ceph; then
    say "installing radosgw ceph-mon ceph-osd (about 65 MB; once per machine)"
    apt-get update -qq
    # s3.md: skipping docs and man pages (so the man-db trigger does not run) and unsafe-io take
    # the dpkg part from ~28 s to ~20 s.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=600 \
      -o Dpkg::Options::=--force-unsafe-io \
      -o Dpkg::Options::=--path-exclude=/usr/share/doc/* \
      -o Dpkg::Options::=--path-include=/usr/share/doc/*/copyright \
      -o Dpkg::Options::=--path-exclude=/usr/share/man/* \
      radosgw ceph-mon ceph-osd >/dev/null
  fi
  exec 9>&-
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

pid_of() { cat "$dir/run/$1.pid" 2>/dev/null || true; }

# A recorded PID counts only while it is still one of our daemons (its command line names our conf).
is_running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-c $conf"
}

# setsid: the daemon leaves our session, so it outlives this script and the test that ran it; a
# background job of a non-interactive shell is not a group leader, so setsid execs without forking
# and $! is the daemon itself.
launch() {
  local name=$1
  shift
  setsid "$@" -c "$conf" -f >>"$dir/log/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/run/$name.pid"
}

# wait_for SECONDS WHAT LOG COMMAND…
wait_for() {
  local seconds=$1 what=$2 log=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      say "$what did not come up in ${seconds} s; last lines of $log:"
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

ceph_cli() { timeout 20 ceph -c "$conf" --connect-timeout 10 "$@"; }
osd_up() { ceph_cli osd dump | grep -q '^osd\.0 up'; }

# s3.env holds RGW_PORT, ACCESS_KEY and SECRET_KEY.
# shellcheck disable=SC2153
s3_answers() {
  # shellcheck source=/dev/null
  . "$dir/s3.env"
  curl -fsS -o /dev/null --max-time 5 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "http://127.0.0.1:$RGW_PORT/"
}

write_conf() {
  local fsid=$1 mon_port=$2 rgw_port=$3 store=${S3_CEPH_STORE:-bluestore}
  local size=$((${S3_CEPH_SIZE_GB:-100} * 1024 * 1024 * 1024))
  case $store in
    bluestore) store_conf="bluestore_block_size = $size" ;;
    memstore) store_conf="memstore_device_bytes = $size" ;;
    *) die "S3_CEPH_STORE is bluestore or memstore, not '$store'" ;;
  esac
  # \$name and \$id are Ceph's own variables (mon.a, osd.0 …), expanded by each daemon.
  cat >"$conf" <<EOF
# Written by scripts/s3-server.sh: a one-node throwaway cluster for tests.
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_addr = 127.0.0.1
public_network = 127.0.0.1/32
ms_bind_msgr1 = false
ms_bind_ipv6 = false
# No cephx between daemons (S3 requests are still signed and checked); crc mode, or radosgw
# insists on a cephx connection to the monitor.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
keyring = $dir/keyring
log_file = $dir/log/\$name.log
mon_cluster_log_file = $dir/log/cluster.log
admin_socket = $dir/run/\$name.asok
run_dir = $dir/run
crash_dir = $dir/crash
mon_data = $dir/\$name
osd_data = $dir/\$name
rgw_data = $dir/rgw
# One copy of everything, on one OSD.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
# Each pool radosgw makes costs two map commits; at the default 1 s interval creation takes ~17 s
# instead of ~7 s.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
# A test machine's disk may be fuller than a real cluster's would be allowed to get.
mon_osd_nearfull_ratio = 0.97
mon_osd_backfillfull_ratio = 0.98
mon_osd_full_ratio = 0.99
mon_data_avail_crit = 0
mon_data_avail_warn = 0
osd_objectstore = $store
$store_conf
osd_memory_target = 1073741824

[client.rgw.a]
# Without tcp_nodelay a small GET takes ~50 ms instead of ~8 ms.
rgw_frontends = beast endpoint=${S3_RGW_BIND:-127.0.0.1}:$rgw_port tcp_nodelay=1
EOF
}

create() {
  local fsid osd_uuid mon_port rgw_port
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  mon_port=$(free_port)
  rgw_port=$(free_port)
  while [ "$rgw_port" = "$mon_port" ]; do rgw_port=$(free_port); done
  mkdir -p "$dir"/{mon.a,osd.0,rgw,log,run,crash}
  write_conf "$fsid" "$mon_port" "$rgw_port"
  {
    echo "RGW_PORT=$rgw_port"
    echo "ACCESS_KEY=$(tr -dc 'A-Z0-9' </dev/urandom | head -c 20)"
    echo "SECRET_KEY=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40)"
  } >"$dir/s3.env"
  chmod 600 "$dir/s3.env"

  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" --keyring "$dir/keyring"
  launch mon.a ceph-mon -i a
  wait_for 30 "ceph-mon" "$dir/log/mon.a.log" ceph_cli mon stat

  [ "$(ceph_cli osd new "$osd_uuid")" = 0 ] || die "ceph osd new did not give id 0"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/osd.0.out" 2>&1 ||
    die "ceph-osd --mkfs failed; see $dir/log/osd.0.log"
  launch osd.0 ceph-osd -i 0
  wait_for 60 "ceph-osd" "$dir/log/osd.0.log" osd_up

  launch rgw.a radosgw -n client.rgw.a
  # shellcheck source=/dev/null
  . "$dir/s3.env"
  radosgw-admin -c "$conf" user create --uid=kiln --display-name="Kiln tests" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
  wait_for 60 "radosgw" "$dir/log/client.rgw.a.log" s3_answers
  touch "$dir/created"
}

restart() {
  if ! is_running mon.a; then
    launch mon.a ceph-mon -i a
    wait_for 30 "ceph-mon" "$dir/log/mon.a.log" ceph_cli mon stat
  fi
  if ! is_running osd.0; then
    # s3.md: after an unclean stop the map still says up; mark it down so the OSD boots cleanly.
    if osd_up; then ceph_cli osd down 0 >/dev/null 2>&1 || true; fi
    launch osd.0 ceph-osd -i 0
    wait_for 60 "ceph-osd" "$dir/log/osd.0.log" osd_up
  fi
  is_running rgw.a || launch rgw.a radosgw -n client.rgw.a
  wait_for 60 "radosgw" "$dir/log/client.rgw.a.log" s3_answers
}

stop() {
  local name pid
  for name in "${DAEMONS[@]}"; do
    is_running "$name" || continue
    pid=$(pid_of "$name")
    kill -TERM "$pid" 2>/dev/null || true
    # is_running, not kill -0: an exited daemon stays a zombie until PID 1 reaps it (~2 s here),
    # and a zombie has no command line.
    for _ in $(seq 1 100); do
      is_running "$name" || break
      sleep 0.05
    done
    if is_running "$name"; then
      say "$name ($pid) ignored SIGTERM for 5 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/run/$name.pid"
  done
}

print_env() {
  # shellcheck source=/dev/null
  . "$dir/s3.env"
  # The tests read KILN_S3_URL; kiln serve/worker read KILN_STORE (--store). RGW here speaks
  # plain HTTP: an s3:// URL means TLS unless it says ?tls=false.
  echo "export KILN_S3_URL='s3://127.0.0.1:$RGW_PORT?tls=false'"
  echo "export KILN_STORE='s3://127.0.0.1:$RGW_PORT?tls=false'"
  echo "export KILN_S3_ACCESS_KEY='$ACCESS_KEY'"
  echo "export KILN_S3_SECRET_KEY='$SECRET_KEY'"
}

case $cmd in
  start)
    t0=$(date +%s%3N)
    install_if_missing
    if [ -f "$dir/created" ]; then
      if is_running mon.a && is_running osd.0 && is_running rgw.a && s3_answers; then
        say "already running"
      else
        restart
      fi
    else
      [ ! -e "$dir" ] || [ -z "$(ls -A "$dir")" ] || die "$dir is not empty and holds no server of ours"
      create
    fi
    # shellcheck source=/dev/null
    . "$dir/s3.env"
    ms=$(($(date +%s%3N) - t0))
    say "ready in $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
    echo "endpoint:   http://127.0.0.1:$RGW_PORT"
    echo "access key: $ACCESS_KEY"
    echo "secret key: $SECRET_KEY"
    echo "store URL:  s3://127.0.0.1:$RGW_PORT?tls=false"
    ;;
  stop)
    [ -f "$dir/ceph.conf" ] || die "$dir holds no server"
    stop
    ;;
  status)
    [ -f "$dir/created" ] || die "$dir holds no server"
    for name in "${DAEMONS[@]}"; do is_running "$name" || die "$name is not running"; done
    s3_answers || die "radosgw runs but does not answer"
    # shellcheck source=/dev/null
    . "$dir/s3.env"
    echo "running: http://127.0.0.1:$RGW_PORT"
    ;;
  env)
    [ -f "$dir/s3.env" ] || die "$dir holds no server"
    print_env
    ;;
  *) usage ;;
esac
