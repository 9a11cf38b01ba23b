#!/bin/sh
# rootfs.sh SUITE [DIR]: a Debian root file system of SUITE (bookworm, trixie, ...) built with
# `debootstrap --variant=minbase --include=$INCLUDE`, cached as a tarball under $CACHE and built
# only when that tarball is missing. Prints the tarball's path (for `docker import`); with DIR, also
# unpacks the root into DIR (which must be empty or missing).
#
# The tests use it for stand-ins of images that cannot be pulled here, e.g. RabbitMQ 3.10.8 from
# bookworm or 4.0.5 from trixie (`docker import "$(scripts/rootfs.sh bookworm)" NAME`).
#
# Env: INCLUDE (comma-separated packages, default rabbitmq-server), CACHE (default
# /var/cache/amqplb/rootfs), MIRROR (default: the Debian archive of this machine's apt sources).
# Needs root; installs debootstrap with apt-get when missing. Concurrent runs wait for each other.
set -eu
suite=${1:?usage: rootfs.sh SUITE [DIR]}
dir=${2:-}
include=${INCLUDE:-rabbitmq-server}
cache=${CACHE:-/var/cache/amqplb/rootfs}
key=$(printf '%s' "$include" | tr -c 'A-Za-z0-9.+-' '_')
tarball="$cache/$suite-minbase-$key.tar"

log() { echo "rootfs.sh: $*" >&2; }

# mirror prints the URI of the Debian archive in this machine's apt sources: the first entry that
# serves a release suite (no "-security", "-updates"...), from deb822 .sources or one-line lists.
mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
			function flush() { if (uri != "" && release && !done) { print uri; done = 1 } uri = ""; release = 0 }
			/^[ \t]*$/ { flush(); next }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /-/) release = 1 }
			END { flush() }' "$f"
	done
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) !~ /-/) print $i }'
}

if [ ! -s "$tarball" ]; then
	[ "$(id -u)" -eq 0 ] || { log "needs root to build $tarball"; exit 1; }
	mkdir -p "$cache"
	exec 9>"$cache/.lock"
	flock 9
fi
if [ ! -s "$tarball" ]; then
	if ! command -v debootstrap >/dev/null 2>&1; then
		log "installing debootstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	fi
	url=${MIRROR:-$(mirror | head -n 1)}
	[ -n "$url" ] || { log "no Debian archive in /etc/apt/sources*: set MIRROR"; exit 1; }
	work=$(mktemp -d "$cache/.build.XXXXXX")
	cleanup() {
		# Never rm -rf through a mount that debootstrap left behind (it would reach the host's /proc, /sys).
		for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m" || true; done
		if awk -v w="$work/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
			log "left $work (still mounted)"
		else
			rm -rf "$work"
		fi
	}
	trap cleanup EXIT
	log "debootstrap $suite with $include (a few minutes, once; cached in $tarball)"
	# The target's policy-rc.d keeps package scripts from starting services (a broker in the
	# chroot would take the host's ports); debootstrap also fakes start-stop-daemon.
	mkdir -p "$work/root/usr/sbin"
	printf '#!/bin/sh\nexit 101\n' >"$work/root/usr/sbin/policy-rc.d"
	chmod 755 "$work/root/usr/sbin/policy-rc.d"
	if ! debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$url" >"$work/log" 2>&1; then
		tail -n 30 "$work/log" >&2
		log "debootstrap failed"
		exit 1
	fi
	# A smaller image: no package lists or caches; policy-rc.d stays (containers have no init).
	rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin "$work/root/var/cache/apt/archives/"*.deb \
		"$work/root/var/log/"*.log "$work/root/debootstrap"
	tar -C "$work/root" --numeric-owner -cf "$work/root.tar" .
	mv "$work/root.tar" "$tarball"
	log "built $tarball ($(du -h "$tarball" | cut -f1))"
fi
if [ -n "$dir" ]; then
	mkdir -p "$dir"
	tar -C "$dir" --numeric-owner -xf "$tarball"
fi
echo "$tarball"
