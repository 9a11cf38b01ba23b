#!/bin/sh
# keepalived's check (keepalived.conf, vrrp_script check_amqplb): exit 0 while amqplb on this VM
# is ready to take clients, i.e. its /readyz answers 200 (a backend it serves has a server up,
# and it is not draining). Any other answer, or none within 2 s, fails.
# Env: AMQPLB_READYZ_URL (default http://127.0.0.1:8404/readyz, amqplb's [admin] listen).
# Needs curl.
exec curl --fail --silent --show-error --max-time 2 --output /dev/null \
	"${AMQPLB_READYZ_URL:-http://127.0.0.1:8404/readyz}"
