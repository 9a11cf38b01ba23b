"""An AMQP 0-9-1 client nobody at amqplb wrote (pika), driven by the e2e tests.

usage: pika_client.py HOST PORT USER PASSWORD VHOST CONNECTION_NAME HEARTBEAT HOLD_SECONDS

It connects, declares a server-named queue, publishes one message to it and reads it back,
prints "open LOCALPORT", then holds the connection for HOLD_SECONDS while servicing heartbeats
(connection.sleep), prints "alive" and closes cleanly.
"""
import sys

import pika

host, port, user, password, vhost, name, heartbeat, hold = sys.argv[1:9]
params = pika.ConnectionParameters(
    host=host,
    port=int(port),
    virtual_host=vhost,
    credentials=pika.PlainCredentials(user, password),
    heartbeat=int(heartbeat),
    client_properties={"connection_name": name},
    connection_attempts=1,
    socket_timeout=10,
)
conn = pika.BlockingConnection(params)
ch = conn.channel()
q = ch.queue_declare(queue="", exclusive=True).method.queue
ch.basic_publish(exchange="", routing_key=q, body=b"hello from pika")
method, _, body = ch.basic_get(queue=q, auto_ack=True)
if body != b"hello from pika":
    print("bad body", body, flush=True)
    sys.exit(1)
print("open", conn._impl._transport._sock.getsockname()[1], flush=True)
conn.sleep(float(hold))
print("alive", flush=True)
conn.close()
