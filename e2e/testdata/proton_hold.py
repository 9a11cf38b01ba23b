"""An AMQP 1.0 client nobody at amqplb wrote (Debian's qpid-proton) that holds a receiver until
its connection is closed, for the graceful-close test.

usage: proton_hold.py HOST PORT USER PASSWORD VHOST CONTAINER_ID ADDRESS

It prints "ready" once its receiver is attached, then, when the peer closes the connection,
"closed CONDITION DESCRIPTION" ("closed - -" without error), or "transport-error ..." when the
connection broke without a close, and exits. It gives up after 60 s ("timeout").
"""
import sys

from proton.handlers import MessagingHandler
from proton.reactor import Container

host, port, user, password, vhost, container_id, address = sys.argv[1:8]


class Hold(MessagingHandler):
    def __init__(self):
        super().__init__(auto_accept=True)
        self.done = False

    def on_start(self, event):
        self.timer = event.container.schedule(60, self)
        conn = event.container.connect(
            "amqp://%s:%s" % (host, port),
            user=user,
            password=password,
            allowed_mechs="PLAIN",
            virtual_host="vhost:" + vhost,
        )
        event.container.create_receiver(conn, address)

    def on_link_opened(self, event):
        if event.receiver and not self.done:
            print("ready", flush=True)

    def finish(self, event, line):
        if self.done:
            return
        self.done = True
        print(line, flush=True)
        self.timer.cancel()
        if event.connection is not None:
            event.connection.close()
        event.container.stop()

    def on_connection_remote_close(self, event):
        # Not left to MessagingHandler: it keeps quiet about amqp:connection:forced, which it
        # treats as a dropped transport to reconnect after (and answers with no close).
        cond = event.connection.remote_condition
        if cond:
            self.finish(event, "closed %s %s" % (cond.name, cond.description))
        else:
            self.finish(event, "closed - -")

    def on_transport_error(self, event):
        cond = event.transport.condition
        self.finish(event, "transport-error %s" % (cond.description if cond else "-"))

    def on_timer_task(self, event):
        print("timeout", flush=True)
        self.done = True
        event.container.stop()


container = Container(Hold())
container.container_id = container_id
container.run()
