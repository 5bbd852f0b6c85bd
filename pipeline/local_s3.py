"""An S3 server on this machine for single-machine runs (the demo) when no endpoint is configured.

moto's server speaks the S3 REST protocol over HTTP, so the pipeline talks to it exactly as it
talks to AWS; only the endpoint differs.
"""

import logging
import os
import socket

from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_local_s3(port: int | None = None) -> tuple[ThreadedMotoServer, str]:
    """Starts the server in a thread of this process; returns it and its endpoint URL."""
    # Any credentials do for the local server, but boto3 refuses to sign without some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"
