"""A `convnet serve` process and the HTTP clients the tests send at it, on loopback only.
Requests are written on raw sockets so that a test can send what a careless or hostile client
sends: a wrong header, a body over the limit, headers one byte at a time."""
import os
import re
import select
import signal
import socket
import subprocess
import time


class Server:
    def __init__(self, convnet_bin, args, cwd, timeout=60):
        env = dict(os.environ, HOME=str(cwd))
        self.started = time.monotonic()
        self.proc = subprocess.Popen([convnet_bin, "serve", "--port", "0", *args], cwd=cwd,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://([^/]+):(\d+)/", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"convnet serve did not start: {line!r} "
                                 f"{self.proc.stderr.read()[-500:]}")
        self.ready = time.monotonic()
        self.host, self.port = m.group(1), int(m.group(2))
        self.log = self.proc.stderr.readline()  # "... loaded in N ms; ..."
        m = re.search(r"loaded in (\d+) ms", self.log)
        self.load_seconds = int(m.group(1)) / 1000 if m else None

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    def stop(self, timeout=60):
        """SIGTERM; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if not f.closed:
                f.close()


def request_bytes(method, path, body=b"", headers=None):
    head = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode(), body


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def text(self):
        return self.body.decode()


def read_response(sock, deadline):
    """Reads one HTTP/1.1 response (Content-Length or chunked); None when the server closed the
    connection first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = recv(sock, deadline)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Response(status, headers, read_chunked(sock, rest, deadline))
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = recv(sock, deadline)
        if not chunk:
            raise ConnectionError("the server closed the connection inside a body")
        rest += chunk
    return Response(status, headers, rest[:length])


def read_chunked(sock, data, deadline):
    body = b""
    while True:
        while b"\r\n" not in data:
            data += recv(sock, deadline)
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(data) < size + 2:
            data += recv(sock, deadline)
        body += data[:size]
        data = data[size + 2:]
        if size == 0:
            return body


def recv(sock, deadline):
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([sock], [], [], left)[0]:
        raise TimeoutError("no answer in time")
    try:
        return sock.recv(1 << 16)
    except ConnectionResetError:
        return b""


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, server, timeout=30):
        self.server, self.timeout, self.sock = server, timeout, None

    def connect(self):
        self.sock = socket.create_connection((self.server.host, self.server.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def send(self, method, path, body=b"", headers=None, byte_by_byte=0.0):
        """One request; byte_by_byte > 0 writes the headers a byte at a time, that many
        seconds apart. Returns a Response, or None when the connection was closed unanswered."""
        head, body = request_bytes(method, path, body, headers)
        for attempt in (0, 1):
            if self.sock is None:
                self.connect()
            try:
                if byte_by_byte:
                    for i in range(len(head)):
                        self.sock.sendall(head[i:i + 1])
                        time.sleep(byte_by_byte)
                else:
                    self.sock.sendall(head)
                self.sock.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer before it has read the body: read its answer
            resp = read_response(self.sock, time.monotonic() + self.timeout)
            if resp is None and attempt == 0 and not byte_by_byte:
                self.close()  # a keep-alive connection the server had closed: once more
                continue
            if resp is None or resp.headers.get("connection", "").lower() == "close":
                self.close()
            return resp
        return None
