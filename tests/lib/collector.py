#!/usr/bin/env python3
"""The fleet tests' report collector, and the relay that lets a host's namespace reach it.

    collector.py serve DIR SOCKET
        An HTTP server on the Unix socket SOCKET that stores each POST as DIR/NNNN.json (the body
        as sent) and DIR/NNNN.meta (path and headers), answering 200; other methods get 405.
    collector.py relay SOCKET PORTFILE
        Run inside a host's network namespace: listens on 127.0.0.1 there (an ephemeral port,
        written to PORTFILE) and pipes each connection to SOCKET.

Each host of a fleet test has its own network namespace, so its 127.0.0.1 is its own; a Unix
socket is reachable from every namespace, so one collector hears every host, each host POSTing to
http://127.0.0.1:PORT/ as it would to a collector on the network. Both serve until killed.
"""
import http.server
import json
import os
import socket
import socketserver
import sys
import threading

lock = threading.Lock()
count = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    def address_string(self):
        return "unix"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with lock:
            count[0] += 1
            n = count[0]
        base = os.path.join(DIR, "%04d" % n)
        with open(base + ".meta", "w") as f:
            json.dump({"path": self.path, "headers": dict(self.headers)}, f)
        with open(base + ".json.tmp", "wb") as f:
            f.write(body)
        os.rename(base + ".json.tmp", base + ".json")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("collector: " + (fmt % args) + "\n")


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def relay(sock_path, portfile):
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(lst.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while True:
        conn, _ = lst.accept()
        up = socket.socket(socket.AF_UNIX)
        up.connect(sock_path)
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        DIR, sock_path = sys.argv[2], sys.argv[3]
        UnixHTTPServer(sock_path, Handler).serve_forever()
    elif sys.argv[1] == "relay":
        relay(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: collector.py serve DIR SOCKET | relay SOCKET PORTFILE")
