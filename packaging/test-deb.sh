#!/usr/bin/env bash
# End-to-end test of the Debian package, on this machine (run as root; it installs and
# purges the package):
#
#     packaging/test-deb.sh             # builds the release binary (cargo, --locked) first
#     packaging/test-deb.sh --no-build  # packages the existing release binary
#
# build → dpkg-deb -c / -I → dpkg -i → user, directories, permissions, conffiles, token,
# --help and man page, systemd-analyze verify → the installed binary started the way
# sluice.service starts it (same user, config, working/state directory, environment file,
# no capabilities; through systemctl when systemd runs this machine) with a workspace
# added to the config → one event posted (202) → SIGHUP reload → SIGTERM (exit 0 within
# 10 s) → dpkg -i again (upgrade path) → dpkg -r (data, config and token kept) → dpkg -P (data and /etc/sluice gone).
# Refuses to run when sluice is already installed. SLUICE_TEST_KEEP=1 leaves the package
# installed on failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
t_start=$(date +%s)

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
note() { echo "note: $*"; }
step() { echo "-- $* ($(($(date +%s) - t_start)) s)"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs the package into this machine)"
# While the package is installed by this test, this file says so: a run that was killed
# (no trap ran) leaves it, and the next run purges that leftover of its own. Any other
# installed sluice is someone's real install, left alone.
marker=/var/lib/sluice-test-deb.installed
if dpkg-query -W -f='${db:Status-Abbrev}' sluice 2>/dev/null | grep -q '^[ihU]'; then
  if [ -f "$marker" ]; then
    note "purging the package a killed test run left installed ($(cat "$marker"))"
    dpkg -P sluice >/dev/null || fail "could not purge the leftover test install"
    rm -f "$marker"
  else
    fail "sluice is already installed here (not by this test); not touching it"
  fi
fi

# --- tools ---------------------------------------------------------------------------------
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v adduser >/dev/null || missing+=(adduser)
command -v objdump >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
daemon_pid=
installed=0
cleanup() {
  local rc=$?
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ]; then
    [ -s "$work/daemon.log" ] && { echo "--- daemon log"; tail -n 40 "$work/daemon.log"; }
    if [ "$installed" = 1 ] && [ "${SLUICE_TEST_KEEP:-0}" != 1 ]; then
      echo "--- purging the package after the failure"
      dpkg -P sluice >/dev/null 2>&1 || true
      rm -f "$marker"
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------------------------
step "build"
t0=$(date +%s)
deb=$("$root/packaging/build-deb.sh" "$@" | tail -n 1)
[ -f "$deb" ] || fail "build-deb.sh made no package"
ok "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB) in $(($(date +%s) - t0)) s"

# --- inspect -------------------------------------------------------------------------------
step "dpkg-deb -c"
dpkg-deb -c "$deb" | tee "$work/contents" | awk '{print "   ", $1, $2, $NF}'
expect_entry() { # mode path
  grep -Eq "^$1 root/root .* \./$2\$" "$work/contents" || fail "package lacks $1 $2"
}
expect_entry '-rwxr-xr-x' 'usr/bin/sluice'
expect_entry '-rw-r--r--' 'lib/systemd/system/sluice.service'
expect_entry '-rw-r-----' 'etc/sluice/sluice.toml'
expect_entry '-rw-------' 'etc/default/sluice'
expect_entry '-rw-r--r--' 'usr/share/man/man1/sluice.1.gz'
expect_entry '-rw-r--r--' 'usr/share/doc/sluice/copyright'
expect_entry '-rw-r--r--' 'usr/share/doc/sluice/README.md'
expect_entry '-rw-r--r--' 'usr/share/doc/sluice/examples/config.example.toml'
if awk '{print $2}' "$work/contents" | grep -qv '^root/root$'; then fail "a file not owned by root"; fi
if grep -q 'var/lib/sluice' "$work/contents"; then fail "the package ships /var/lib/sluice (data must not be package files)"; fi
ok "contents: binary, unit, conffiles, man page, docs; all root/root"

step "dpkg-deb -I"
dpkg-deb -I "$deb" | tee "$work/info" | sed 's/^/    /'
for member in control conffiles md5sums postinst prerm postrm; do
  grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +(\* +)?$member( |\$)" "$work/info" || fail "control archive lacks $member"
done
grep -q '^ Package: sluice$' "$work/info" || fail "Package field"
grep -Eq '^ Depends: .*adduser' "$work/info" || fail "Depends lacks adduser"
grep -Eq '^ Depends: .*libc6 \(>= 2\.[0-9]+\)' "$work/info" || fail "Depends lacks libc6 (>= …)"
[ "$(dpkg-deb -I "$deb" conffiles | sort | tr '\n' ' ')" = "/etc/default/sluice /etc/sluice/sluice.toml " ] ||
  fail "conffiles are not exactly /etc/sluice/sluice.toml and /etc/default/sluice"
ok "control: fields, conffiles, maintainer scripts"

# --- install -------------------------------------------------------------------------------
step "dpkg -i"
installed=1
echo "installed by packaging/test-deb.sh at $(date -u +%FT%TZ)" >"$marker"
dpkg -i "$deb"
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' sluice)" = "ii " ] || fail "not installed (ii)"
ok "installed: $(dpkg-query -W -f='${Package} ${Version}' sluice)"

step "user, directories, permissions"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd sluice) || fail "no sluice user"
[ "$uid" -lt 1000 ] || fail "sluice is not a system user (uid $uid)"
[ "$(getent group sluice | cut -d: -f3)" = "$gid" ] || fail "sluice's primary group is not sluice"
[ "$home" = /var/lib/sluice ] || fail "home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "shell is $shell"
ok "system user sluice (uid $uid, group sluice, home $home, shell $shell)"
expect_stat() { # path owner:group mode
  local got
  got=$(stat -c '%U:%G %a' "$1") || fail "missing $1"
  [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
  ok "$1 $2 $3"
}
expect_stat /var/lib/sluice sluice:sluice 750
expect_stat /etc/sluice root:sluice 750
expect_stat /etc/sluice/sluice.toml root:sluice 640
expect_stat /etc/sluice/admin-token root:sluice 640
expect_stat /etc/default/sluice root:root 600
expect_stat /usr/bin/sluice root:root 755
expect_stat /lib/systemd/system/sluice.service root:root 644

step "conffiles and admin token"
dpkg-query -W -f='${Conffiles}\n' sluice | awk 'NF {print $1}' | sort >"$work/conffiles"
[ "$(tr '\n' ' ' <"$work/conffiles")" = "/etc/default/sluice /etc/sluice/sluice.toml " ] ||
  fail "dpkg does not record both conffiles: $(cat "$work/conffiles")"
conf=/etc/sluice/sluice.toml
grep -q '^path = "/var/lib/sluice/sluice.redb"$' $conf || fail "storage.path is not /var/lib/sluice/sluice.redb"
grep -q '^admin_token_file = "/etc/sluice/admin-token"$' $conf || fail "admin_token_file"
if grep -Eq '^\[\[(workspaces|destinations)\]\]' $conf; then fail "the conffile defines workspaces or destinations"; fi
ok "$conf: store in /var/lib/sluice, token file, no workspaces or destinations"
grep -Eqx '[0-9a-f]{64}' /etc/sluice/admin-token || fail "admin token is not 64 hex characters"
as_sluice() { setpriv --reuid=sluice --regid=sluice --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"; }
as_sluice cat /etc/sluice/admin-token >/dev/null || fail "sluice cannot read the admin token"
if setpriv --reuid=nobody --regid=nogroup --clear-groups -- cat /etc/sluice/admin-token >/dev/null 2>&1; then
  fail "nobody can read the admin token"
fi
ok "admin token: 64 hex characters, readable by sluice, not by nobody"
if [ -x /usr/bin/deb-systemd-helper ]; then
  [ -L /etc/systemd/system/multi-user.target.wants/sluice.service ] || fail "unit not enabled"
  ok "unit enabled (multi-user.target.wants)"
fi

step "--help and man page"
help_all() { # every (sub)command's --help exits 0; prints the command paths
  local c
  /usr/bin/sluice "$@" --help >/dev/null || fail "sluice $* --help"
  echo "sluice $*"
  for c in $(/usr/bin/sluice "$@" --help | awk '/^Commands:/ {on=1; next} on && /^$/ {exit} on && $1 != "help" {print $1}'); do
    help_all "$@" "$c"
  done
}
help_all | sed 's/ *$//' >"$work/commands"
for c in serve config "config check" destinations "destinations status" "destinations pause" \
  "destinations resume" audit "audit verify" "audit export" dlq "dlq list" "dlq replay" \
  "dlq discard" backup simulate; do
  grep -qx "sluice $c" "$work/commands" || fail "sluice --help does not list '$c'"
done
zcat /usr/share/man/man1/sluice.1.gz >"$work/man"
while read -r c; do
  [ "$c" = sluice ] && continue
  grep -qF "\"$c\"" "$work/man" || fail "man page lacks $c"
done <"$work/commands"
ok "$(wc -l <"$work/commands") commands, each with --help and a man page section"

step "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  # Documentation=man:… needs man-db to resolve; that alone is not a unit error.
  if ! systemd-analyze verify /lib/systemd/system/sluice.service >"$work/verify" 2>&1; then
    if grep -v "Command 'man sluice(1)' failed" "$work/verify" | grep -q .; then
      cat "$work/verify"; fail "systemd-analyze verify"
    fi
  fi
  sed 's/^/    /' "$work/verify"
  ok "systemd-analyze verify sluice.service"
else
  note "systemd-analyze is not installed here; unit verification skipped"
fi

# --- run as the unit does ------------------------------------------------------------------
unit=/lib/systemd/system/sluice.service
unit_value() { sed -n "s/^$1=//p" "$unit"; }
[ "$(unit_value User)" = sluice ] && [ "$(unit_value Group)" = sluice ] || fail "unit User/Group"
[ "$(unit_value Type)" = notify ] || fail "unit Type"
grep -qx 'ExecStartPre=/usr/bin/sluice config check /etc/sluice/sluice.toml' $unit || fail "ExecStartPre"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' $unit || fail "ExecReload"
[ "$(unit_value StateDirectory)" = sluice ] || fail "StateDirectory"
stop_timeout=$(unit_value TimeoutStopSec | tr -dc 0-9)
[ "$stop_timeout" -gt 10 ] || fail "TimeoutStopSec ($stop_timeout s) not above the 10 s shutdown bound"
exec_start=$(unit_value ExecStart)
[ "$exec_start" = "/usr/bin/sluice serve --config /etc/sluice/sluice.toml" ] || fail "ExecStart is $exec_start"

step "configure: a workspace and a free port"
port=18470
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
key="pkg_test_$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
sed -i "s/^listen = .*/listen = \"127.0.0.1:$port\"/" $conf
cat >>$conf <<EOF

[[workspaces]]
id = "pkgtest"
plan = "growth"
ingest_keys = ["$key"]
EOF
base="http://127.0.0.1:$port"
token=$(cat /etc/sluice/admin-token)

systemd_runs=0
[ -d /run/systemd/system ] && systemd_runs=1
if [ "$systemd_runs" = 1 ]; then
  step "start: systemctl restart sluice (systemd runs this machine)"
  systemctl restart sluice
  daemon_pid=$(systemctl show -p MainPID --value sluice)
else
  step "start: $exec_start, as sluice:sluice in /var/lib/sluice, no capabilities"
  # ExecStartPre, then ExecStart, as the unit has them; EnvironmentFile= lines as env.
  mapfile -t envs < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' /etc/default/sluice || true)
  (cd /var/lib/sluice && umask 0027 && env -u NOTIFY_SOCKET "${envs[@]}" \
    setpriv --reuid=sluice --regid=sluice --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    /usr/bin/sluice config check /etc/sluice/sluice.toml) >"$work/check" 2>&1 ||
    { cat "$work/check"; fail "ExecStartPre (config check) as sluice"; }
  ok "config check as sluice: $(head -n 1 "$work/check")"
  # shellcheck disable=SC2086
  (cd /var/lib/sluice && umask 0027 && exec env -u NOTIFY_SOCKET "${envs[@]}" \
    setpriv --reuid=sluice --regid=sluice --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    $exec_start) >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
fi
for _ in $(seq 1 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] && break
  kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited before it was ready"
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ] || fail "/readyz never answered 200"
[ "$(stat -c %U /proc/"$daemon_pid")" = sluice ] || fail "the daemon does not run as sluice"
grep -q '^CapEff:[[:space:]]*0*$' /proc/"$daemon_pid"/status || fail "the daemon has capabilities"
ok "ready on $base (pid $daemon_pid, user sluice, no capabilities)"

step "event and admin API"
body='{"event_id":"pkg-1","event_name":"Purchase","event_time":'"$(date +%s)"',"action_source":"website","user_data":{"email":"Buyer@Example.com"},"custom_data":{"currency":"EUR","value":42.5}}'
post() { curl -s -o "$work/resp" -w '%{http_code}' -X POST "$base/v1/events" \
  -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$body"; }
code=$(post "$key")
[ "$code" = 202 ] || fail "POST /v1/events answered $code: $(cat "$work/resp")"
[ "$(cat "$work/resp")" = '{"accepted":1,"duplicates":0,"rejected":[]}' ] || fail "body $(cat "$work/resp")"
ok "POST /v1/events → 202 $(cat "$work/resp")"
code=$(post "$key")
[ "$code" = 202 ] && [ "$(cat "$work/resp")" = '{"accepted":0,"duplicates":1,"rejected":[]}' ] ||
  fail "resend answered $code $(cat "$work/resp")"
ok "the same event again → 202 duplicate"
code=$(post "wrong_key")
[ "$code" = 401 ] || fail "unknown key answered $code"
ok "unknown ingest key → 401"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/destinations")
[ "$code" = 401 ] || fail "admin route without token answered $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/v1/destinations")
[ "$code" = 200 ] || fail "admin route with the installed token answered $code"
ok "admin API: 401 without the token, 200 with /etc/sluice/admin-token"
/usr/bin/sluice destinations status >"$work/status" 2>&1 || { cat "$work/status"; fail "sluice destinations status (root, default --config)"; }
ok "sluice destinations status (as root: token and URL from /etc/sluice/sluice.toml)"
curl -s "$base/metrics" | grep -q '^sluice_ingest_events_total{merchant="pkgtest"} 1$' ||
  fail "/metrics does not count the accepted event"
ok "/metrics open, counts the accepted event"
/usr/bin/sluice backup --name pkg-backup >"$work/backup" 2>&1 || { cat "$work/backup"; fail "sluice backup"; }
expect_stat /var/lib/sluice/backups/pkg-backup sluice:sluice 640
ok "sluice backup → $(cat "$work/backup")"

step "reload (SIGHUP)"
if [ "$systemd_runs" = 1 ]; then systemctl reload sluice; else kill -HUP "$daemon_pid"; fi
for _ in $(seq 1 50); do
  curl -s -H "Authorization: Bearer $token" "$base/v1/audit/export" | grep -q '"config_reloaded"' && break
  sleep 0.1
done
curl -s -H "Authorization: Bearer $token" "$base/v1/audit/export" | grep -q '"config_reloaded"' ||
  fail "no config_reloaded in the audit chain after SIGHUP"
kill -0 "$daemon_pid" || fail "the daemon died on SIGHUP"
ok "SIGHUP reloaded the config (config_reloaded audited), still running"

step "stop (SIGTERM)"
t0=$(date +%s%N)
if [ "$systemd_runs" = 1 ]; then
  systemctl stop sluice
  [ "$(systemctl show -p Result --value sluice)" = success ] || fail "the unit did not stop cleanly"
  status=$(systemctl show -p ExecMainStatus --value sluice)
else
  kill -TERM "$daemon_pid"
  status=0
  wait "$daemon_pid" || status=$?
fi
ms=$((($(date +%s%N) - t0) / 1000000))
daemon_pid=
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
[ "$ms" -lt 10000 ] || fail "took $ms ms to stop (bound: 10 s)"
ok "SIGTERM → exit 0 in $ms ms"
expect_stat /var/lib/sluice/sluice.redb sluice:sluice 600

step "dpkg -i again (the upgrade path: postinst configure with the old version)"
sum_before=$(md5sum /etc/sluice/admin-token $conf)
dpkg -i --force-confold "$deb" >/dev/null
[ "$sum_before" = "$(md5sum /etc/sluice/admin-token $conf)" ] ||
  fail "reinstalling changed the token or the edited config"
[ -s /var/lib/sluice/sluice.redb ] || fail "reinstalling lost the store"
expect_stat /etc/sluice/sluice.toml root:sluice 640
expect_stat /etc/sluice/admin-token root:sluice 640
if [ "$systemd_runs" = 1 ]; then
  systemctl is-active --quiet sluice || fail "the unit is not running after the upgrade"
fi
ok "reinstalled: token and edited config unchanged, store kept"

# --- remove and purge ----------------------------------------------------------------------
step "dpkg -r"
dpkg -r sluice
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' sluice)" = "rc " ] || fail "not in state rc after remove"
[ ! -e /usr/bin/sluice ] || fail "/usr/bin/sluice still there"
[ ! -e /lib/systemd/system/sluice.service ] || fail "the unit is still there"
[ -s /var/lib/sluice/sluice.redb ] || fail "remove deleted the store"
grep -q '^id = "pkgtest"$' $conf || fail "remove lost the edited conffile"
[ -s /etc/sluice/admin-token ] || fail "remove deleted the admin token"
ok "removed: binary and unit gone; store, edited config and token kept"

step "dpkg -P"
dpkg -P sluice
installed=0
rm -f "$marker"
dpkg-query -W -f='${db:Status-Abbrev}' sluice 2>/dev/null | grep -q '^[ihrc]' && fail "still known to dpkg after purge"
for p in /var/lib/sluice /etc/sluice /etc/default/sluice; do
  [ ! -e "$p" ] || fail "$p still there after purge"
done
if [ -x /usr/bin/deb-systemd-helper ]; then
  [ ! -e /etc/systemd/system/multi-user.target.wants/sluice.service ] || fail "enable symlink left after purge"
fi
ok "purged: /var/lib/sluice, /etc/sluice, /etc/default/sluice gone"
getent passwd sluice >/dev/null && note "the sluice system user is kept on purge (Debian practice; deluser --system sluice removes it)"

echo "package test passed in $(($(date +%s) - t_start)) s"
