"""Loopback ports for the Python benchmarks: a free one, and waiting until a
started server listens on it."""
import socket
import sys
import time

H = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((H, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, name):
    """Returns once `proc` (a Popen) accepts on `port`; exits the benchmark if
    it ends first or does not listen within 60 s."""
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited at start")
        try:
            socket.create_connection((H, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{name} did not listen on {port}")
