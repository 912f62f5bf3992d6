"""The admin port's HTTP server (transport/admin_http.py) on a real loopback socket: routes,
methods, keep-alive, and every bound answered with its status rather than a crash or a hang."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from costctx.transport import admin_http
from costctx.transport.admin_http import AdminRequest, AdminResponse, AdminServer


@pytest.fixture
def server() -> Iterator[AdminServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = AdminServer("127.0.0.1:0")
    server.add_get("/hello", lambda request: AdminResponse(200, b"hi " + request.path.encode()))
    server.add_get("/boom", lambda request: 1 / 0)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def raw(server: AdminServer, data: bytes) -> bytes:
    """Send `data`, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_routes_methods_and_statuses(server):
    base = f"http://127.0.0.1:{server.port}"
    response = requests.get(f"{base}/hello?x=%ff", timeout=5)
    assert (response.status_code, response.text) == (200, "hi /hello")
    head = requests.head(f"{base}/hello", timeout=5)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == "9"
    assert requests.get(f"{base}/nowhere", timeout=5).status_code == 404
    refused = requests.post(f"{base}/hello", data=b"x", timeout=5)
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD"
    assert requests.get(f"{base}/boom", timeout=5).status_code == 500
    assert server.routes() == [("GET", "/boom"), ("GET", "/hello"), ("HEAD", "/boom"), ("HEAD", "/hello")]


def test_keep_alive_serves_several_requests_on_one_connection(server):
    with requests.Session() as session:
        for _ in range(3):
            assert session.get(f"http://127.0.0.1:{server.port}/hello", timeout=5).status_code == 200
    # HTTP/1.0 without keep-alive: answered, then closed (raw() returns only once it is).
    assert raw(server, b"GET /hello HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")
    two = raw(server, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
                      b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2 and two.endswith(b"hi /hello")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /hello HTTP/2.0\r\n\r\n", b"505"),
    (b"GET /hello HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", b"400"),
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", b"400"),
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", b"400"),
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", b"413"),
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     + (b"8000\r\n" + b"x" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n", b"413"),  # chunked, past MAX_BODY
    (b"GET /hello HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"431"),
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nX: " + b"y" * (4 * admin_http.MAX_HEAD) + b"\r\n\r\n", b"431"),
    (b"GET /hello HTTP/1.1\r\nHost: a\r\nX: y", b"400"),  # the client closed mid-head
])
def test_bad_requests_get_their_status_and_the_connection_closed(server, request_bytes, status):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(request_bytes)
    sock.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert b"Connection: close" in answer
    assert requests.get(f"http://127.0.0.1:{server.port}/hello", timeout=5).status_code == 200  # still serving


def test_a_body_is_read_past_and_the_connection_kept(server):
    answer = raw(server, b"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcdeGET /hello HTTP/1.1\r\n"
                         b"Host: a\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    chunked = raw(server, b"GET /hello HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                          b"0\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert chunked.count(b"HTTP/1.1 200 OK") == 2


def test_a_method_other_than_get_or_head_is_refused_with_allow(server):
    answer = raw(server, b"get /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")  # methods are case-sensitive
    assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"Allow: GET, HEAD" in answer


def test_guards_run_before_handlers_and_after_routing(server):
    seen: list[str] = []

    def guard(request: AdminRequest) -> AdminResponse | None:
        seen.append(request.path)
        return None if request.headers.get("authorization") == "ok" else AdminResponse(401, b"no")

    server.guards.append(guard)
    base = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{base}/hello", timeout=5).status_code == 401
    assert requests.get(f"{base}/hello", headers={"Authorization": "ok"}, timeout=5).status_code == 200
    assert requests.get(f"{base}/nowhere", timeout=5).status_code == 404  # unknown paths never reach a guard
    assert seen == ["/hello", "/hello"]


def test_connections_over_the_limit_are_closed(server, monkeypatch):
    monkeypatch.setattr(admin_http, "MAX_CONNECTIONS", 2)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    for sock in held:  # each served once, so the server has counted it
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    try:
        answer = raw(server, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    except ConnectionResetError:  # closed with the request unread
        answer = b""
    assert answer == b""
    for sock in held:
        sock.close()
