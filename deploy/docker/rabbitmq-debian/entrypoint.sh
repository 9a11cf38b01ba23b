#!/bin/sh
# Entry point of the Debian RabbitMQ stand-in (see Dockerfile): runs the node as user rabbitmq
# the way the official image does, with RABBITMQ_ERLANG_COOKIE as its cookie.
set -eu
data=/var/lib/rabbitmq
chown rabbitmq:rabbitmq "$data"
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
	umask 077
	printf '%s' "$RABBITMQ_ERLANG_COOKIE" >"$data/.erlang.cookie"
	chown rabbitmq:rabbitmq "$data/.erlang.cookie"
	chmod 400 "$data/.erlang.cookie"
	umask 022
fi
unset RABBITMQ_ERLANG_COOKIE # deprecated in RabbitMQ 3.x itself: the cookie file is the one source
if [ "${1:-}" = rabbitmq-server ]; then
	shift
	cd "$data"
	exec runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
