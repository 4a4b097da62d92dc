#!/usr/bin/env bash
# Builds the Debian package of sluice with dpkg-deb (no debhelper, no cargo-deb):
#
#     packaging/build-deb.sh            # cargo build --release --locked, then package
#     packaging/build-deb.sh --no-build # package the existing release binary
#
# Prints the path of the .deb on its last line:
#     ${CARGO_TARGET_DIR:-target}/debian/sluice_<version>-<revision>_<arch>.deb
# Environment: SLUICE_DEB_REVISION (default 1), CARGO_TARGET_DIR.
# Needs: cargo (unless --no-build), dpkg-deb, gzip, objdump (binutils), strip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/packaging"
target="${CARGO_TARGET_DIR:-$root/target}"

build=1
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  (cd "$root" && cargo build --release --locked)
fi
bin="$target/release/sluice"
[ -x "$bin" ] || { echo "build-deb.sh: no binary at $bin" >&2; exit 1; }

version=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$root/Cargo.toml" | head -1)
revision="${SLUICE_DEB_REVISION:-1}"
arch=$(dpkg --print-architecture)
out="$target/debian"
stage="$out/stage"
rm -rf "$stage"
mkdir -p "$out" "$stage/DEBIAN"

# --- files ----------------------------------------------------------------------------
install -D -m 0755 "$bin" "$stage/usr/bin/sluice"
strip --strip-debug "$stage/usr/bin/sluice"
install -D -m 0644 "$root/systemd/sluice.service" "$stage/lib/systemd/system/sluice.service"
# Conffiles. sluice.toml may hold ingest keys: 0640, group sluice set by postinst.
install -D -m 0640 "$here/sluice.toml" "$stage/etc/sluice/sluice.toml"
# Read by systemd (as root) before it drops privileges; may hold secrets.
install -D -m 0600 "$here/default.env" "$stage/etc/default/sluice"
doc="$stage/usr/share/doc/sluice"
install -D -m 0644 "$root/README.md" "$doc/README.md"
install -D -m 0644 "$root/config.example.toml" "$doc/examples/config.example.toml"
install -D -m 0644 "$here/copyright" "$doc/copyright"
{
  echo "sluice ($version-$revision) unstable; urgency=medium"
  echo
  echo "  * Package built from the sluice source tree by packaging/build-deb.sh."
  echo
  echo " -- sluice maintainers <sluice@localhost>  $(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")"
} | gzip -9n >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

mkdir -p "$stage/usr/share/man/man1"
# Man page generated from --help of every (sub)command, so it cannot drift from the binary.
roff() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }
subcommands() { # the names in the "Commands:" section of `sluice $* --help`, minus help
  "$bin" "$@" --help | awk '/^Commands:/ {on=1; next} on && /^$/ {exit} on && $1 != "help" {print $1}'
}
man_section() { # $@ = command path below sluice
  if [ $# -gt 0 ]; then printf '.SS "sluice %s"\n' "$*"; fi
  echo ".nf"
  "$bin" "$@" --help | roff
  echo ".fi"
  local c
  for c in $(subcommands "$@"); do man_section "$@" "$c"; done
}
{
  echo ".TH SLUICE 1 \"\" \"sluice $version\" \"User Commands\""
  echo ".SH NAME"
  echo "sluice \\- durable conversion-event relay to ad platforms"
  echo ".SH SYNOPSIS"
  echo ".B sluice"
  echo ".I COMMAND"
  echo "[OPTIONS]"
  echo ".SH COMMANDS"
  man_section
  echo ".SH FILES"
  echo ".TP"; echo ".I /etc/sluice/sluice.toml"; echo "Configuration (conffile)."
  echo ".TP"; echo ".I /etc/sluice/admin-token"; echo "Admin API token, generated at install; root:sluice 0640."
  echo ".TP"; echo ".I /etc/default/sluice"; echo "Environment of the service (secrets for *_env keys)."
  echo ".TP"; echo ".I /var/lib/sluice/"; echo "State: the redb store and backups."
  echo ".SH SEE ALSO"
  echo "/usr/share/doc/sluice/README.md, /usr/share/doc/sluice/examples/config.example.toml,"
  echo ".BR systemctl (1),"
  echo ".BR journalctl (1)"
} | gzip -9n >"$stage/usr/share/man/man1/sluice.1.gz"
chmod 0644 "$stage/usr/share/man/man1/sluice.1.gz"

# --- control ---------------------------------------------------------------------------
# libc6: the newest GLIBC_ symbol version the binary needs.
glibc=$(objdump -T "$stage/usr/bin/sluice" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
depends="adduser, libc6 (>= ${glibc:-2.34})"
if objdump -p "$stage/usr/bin/sluice" | grep -q 'NEEDED *libgcc_s'; then
  depends="$depends, libgcc-s1"
fi
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: sluice
Version: $version-$revision
Architecture: $arch
Maintainer: sluice maintainers <sluice@localhost>
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Description: durable conversion-event relay to ad platforms
 sluice takes conversion and tracking events over local HTTP, stores them
 durably in one embedded redb file, and delivers them to ad and marketing
 platform APIs with pacing, bounded retries, a dead-letter queue and
 auto-pause of failing destinations, every pause recorded in a hash-chained
 audit log. Runs as the systemd service sluice.service.
EOF
printf '%s\n' /etc/sluice/sluice.toml /etc/default/sluice >"$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "$here/debian/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

deb="$out/sluice_${version}-${revision}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
