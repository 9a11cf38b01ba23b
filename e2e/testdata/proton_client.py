"""An AMQP 1.0 client nobody at amqplb wrote (Debian's qpid-proton), driven by the e2e tests.

usage: proton_client.py HOST PORT USER PASSWORD VHOST CONTAINER_ID ADDRESS

It connects with SASL PLAIN (the open's hostname is "vhost:VHOST", as RabbitMQ 4 reads it),
sends one message to ADDRESS (RabbitMQ 4: /queues/NAME), receives it back, prints "ok BODY"
and closes.
"""
import sys

from proton import Message
from proton.reactor import Container
from proton.utils import BlockingConnection

host, port, user, password, vhost, container_id, address = sys.argv[1:8]
container = Container()
container.container_id = container_id
conn = BlockingConnection(
    "amqp://%s:%s" % (host, port),
    timeout=20,
    container=container,
    user=user,
    password=password,
    allowed_mechs="PLAIN",
    virtual_host="vhost:" + vhost,
)
sender = conn.create_sender(address)
sender.send(Message(body="hello over AMQP 1.0"))
receiver = conn.create_receiver(address)
msg = receiver.receive(timeout=20)
receiver.accept()
print("ok", msg.body, flush=True)
conn.close()
