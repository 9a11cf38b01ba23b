#!/bin/sh
# deb.sh [OUTDIR]: builds the Debian package of amqplb with dpkg-deb, into OUTDIR (default bin/),
# and prints its path. `make deb` runs it.
#
# The package: /usr/bin/amqplb (static, as scripts/build-static.sh builds it), the configuration
# /etc/amqplb/amqplb.toml and the service's environment /etc/default/amqplb (conffiles), a
# hardened amqplb.service (Type=notify, reload = check, then SIGHUP), a system user amqplb made
# by postinst with adduser, and a manual page. Files are in deploy/debian/.
# Env: GO, VERSION (Debian version; default from `git describe`), MAINTAINER.
set -eu
cd "$(dirname "$0")/.."
out=${1:-bin}
src=deploy/debian
arch=$(dpkg --print-architecture)

# A Debian version: a tag v1.2.3 gives 1.2.3; otherwise 0~gitDATE.HASH sorts before any release.
if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --exact-match 2>/dev/null); then
		VERSION=${tag#v}
	else
		VERSION="0~git$(git log -1 --format=%cd --date=format:%Y%m%d%H%M 2>/dev/null || date -u +%Y%m%d%H%M).$(git rev-parse --short HEAD 2>/dev/null || echo local)"
	fi
fi
maintainer=${MAINTAINER:-amqplb developers <devel@amqplb.invalid>}

work=$(mktemp -d "${TMPDIR:-/tmp}/amqplb-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$out" "$root/DEBIAN" "$root/usr/bin" "$root/etc/amqplb" "$root/etc/default" \
	"$root/lib/systemd/system" "$root/usr/share/doc/amqplb" "$root/usr/share/man/man1" \
	"$root/usr/share/lintian/overrides"

VERSION=$VERSION sh scripts/build-static.sh "$work/bin"
install -m 0755 "$work/bin/amqplb" "$root/usr/bin/amqplb"
install -m 0644 "$src/amqplb.toml" "$root/etc/amqplb/amqplb.toml"
install -m 0644 "$src/default" "$root/etc/default/amqplb"
install -m 0644 "$src/amqplb.service" "$root/lib/systemd/system/amqplb.service"
install -m 0644 "$src/copyright" "$root/usr/share/doc/amqplb/copyright"
gzip -9n <"$src/amqplb.1" >"$root/usr/share/man/man1/amqplb.1.gz"
chmod 0644 "$root/usr/share/man/man1/amqplb.1.gz"
# Go links statically (no C library is used); the binary has no build ID lintian could object to.
printf 'amqplb: statically-linked-binary [usr/bin/amqplb]\n' >"$root/usr/share/lintian/overrides/amqplb"
chmod 0644 "$root/usr/share/lintian/overrides/amqplb"
{
	printf 'amqplb (%s) unstable; urgency=medium\n\n' "$VERSION"
	printf '  * Built from the amqplb source tree (%s).\n\n' "$(git rev-parse --short HEAD 2>/dev/null || echo local)"
	printf ' -- %s  %s\n' "$maintainer" "$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$root/usr/share/doc/amqplb/changelog.gz" # a native package: changelog, not changelog.Debian
chmod 0644 "$root/usr/share/doc/amqplb/changelog.gz"

for f in postinst prerm postrm; do install -m 0755 "$src/$f" "$root/DEBIAN/$f"; done
printf '/etc/amqplb/amqplb.toml\n/etc/default/amqplb\n' >"$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f ! -path './etc/*' -print | sed 's|^\./||' | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: amqplb
Version: $VERSION
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: adduser
Section: net
Priority: optional
Description: load balancer for RabbitMQ that speaks AMQP
 amqplb is a layer-4 load balancer for AMQP 0-9-1, meant to sit where
 HAProxy sits in front of a RabbitMQ cluster. Its health check is a real
 AMQP handshake, so a broker that is hung, whose vhost is gone or whose
 login is broken is taken out of rotation. It reads TOML or an existing
 haproxy.cfg, and serves a status page, Prometheus metrics and an API.
CONTROL
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
deb="$out/amqplb_${VERSION}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
