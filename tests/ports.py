"""Free loopback ports for the tests that start servers (TF cluster tasks, Beam's job service and
worker pool)."""

import socket
from typing import List


def free_ports(n: int) -> List[int]:
    """`n` distinct TCP ports free on 127.0.0.1 now (the sockets are held open together, so the
    ports differ; they are closed before the servers bind them)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
