"""A listening TCP socket for an endpoint, bound before the server starts so that a port in use
fails with the component's name and endpoint, and port 0 tells the port chosen."""

from __future__ import annotations

import socket

from costctx.config.types import split_host_port


def listening_socket(endpoint: str, name: str, backlog: int) -> socket.socket:
    """A non-blocking socket listening on `endpoint` (host:port; IPv6 hosts unbracketed by
    split_host_port); OSError naming `name` and the endpoint if it cannot bind."""
    host, port = split_host_port(endpoint)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for {name} on {endpoint}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
