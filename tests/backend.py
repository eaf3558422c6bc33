#!/usr/bin/env python3
"""xgate's fault backend for the proxy tests: an HTTP/1.1 server (keep-alive) whose paths
misbehave on purpose.

  GET  /hello              200 "hello from <name>\\n" (Content-Length)
  GET  /status/<code>      that status, body "status <code>\\n"
  GET  /slow/<ms>          waits <ms> before the response head
  GET  /chunked/<n>        a chunked response of n chunks "chunk <i>\\n"
  GET  /big/<bytes>        <bytes> of a repeating pattern (Content-Length)
  GET  /reset              a response head promising 100000 bytes, 1000 of them, then a RST
  GET  /truncate           a response head promising 100000 bytes, 1000 of them, then a FIN
  GET  /until-close        HTTP/1.0-style body delimited by closing the connection
  GET  /headers            the request head as received, as the body
  POST /echo               the request body back (Content-Length or chunked request bodies),
                           with X-Body-Sha256 and X-Body-Length of what arrived
  POST /sha                only the SHA-256 and length of the body (for large uploads)

Usage: backend.py ADDRESS PORT NAME
"""

import hashlib
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xgate-test-backend"

    def log_message(self, *args):
        pass

    def send_body(self, code, body, content_type="text/plain", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        name = self.server.name
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if path == "/hello":
            self.send_body(200, f"hello from {name}\n".encode())
        elif parts[0] == "status" and len(parts) == 2:
            code = int(parts[1])
            self.send_body(code, f"status {code}\n".encode())
        elif parts[0] == "slow" and len(parts) == 2:
            time.sleep(int(parts[1]) / 1000)
            self.send_body(200, b"slow\n")
        elif parts[0] == "chunked" and len(parts) == 2:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(parts[1])):
                data = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif parts[0] == "big" and len(parts) == 2:
            size = int(parts[1])
            pattern = b"0123456789abcdef" * 4096
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            while sent < size:
                chunk = pattern[: min(len(pattern), size - sent)]
                self.wfile.write(chunk)
                sent += len(chunk)
        elif path in ("/reset", "/truncate"):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            time.sleep(0.2)
            if path == "/reset":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.close_connection = True
        elif path == "/until-close":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            self.wfile.write(b"body until close\n" * 100)
            self.close_connection = True
        elif path == "/headers":
            head = self.requestline + "\r\n" + str(self.headers)
            self.send_body(200, head.encode())
        else:
            self.send_body(404, b"no such path\n")

    def do_POST(self):
        body = self.read_body()
        digest = hashlib.sha256(body).hexdigest()
        extra = (("X-Body-Sha256", digest), ("X-Body-Length", str(len(body))))
        if self.path.startswith("/echo"):
            self.send_body(200, body, "application/octet-stream", extra)
        elif self.path.startswith("/sha"):
            self.send_body(200, f"{len(body)} {digest}\n".encode(), extra=extra)
        else:
            self.send_body(404, b"no such path\n")

    do_PUT = do_POST


def main():
    address, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer((address, port), Handler)
    server.name = name
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
