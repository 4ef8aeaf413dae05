"""How long a proxy holds a streamed chunk: a loopback upstream that sends
a server-sent-events answer (headers, then one event 50 ms later, then the
end) and notes when it sends the event; a client that notes when the event
reaches it through the proxy. Both in this process, on one monotonic clock.

usage: first_chunk.py SAMPLES
Prints the upstream's port, then reads one line from stdin: a JSON list of
[name, url prefix, header or ""] (the sample id is appended to the prefix),
and prints one JSON object: per name, p50/p99/max of the delay in
microseconds.
"""

import json
import socket
import sys
import threading
import time
import urllib.parse

sent = {}


def upstream(server):
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def serve(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        sample = data.split(b" ", 2)[1].rsplit(b"/", 1)[-1].decode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.05)
        event = b"data: 1\n\n"
        sent[sample] = time.monotonic_ns()
        conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
        time.sleep(0.05)
        conn.sendall(b"0\r\n\r\n")


def fetch(url, header, sample):
    parts = urllib.parse.urlsplit(url)
    conn = socket.create_connection((parts.hostname, parts.port))
    with conn:
        extra = (header + "\r\n") if header else ""
        conn.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                      % (parts.path, parts.netloc, extra)).encode())
        data = b""
        while b"data: 1" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise SystemExit("no event from %s: %r" % (url, data[:300]))
            data += chunk
        arrived = time.monotonic_ns()
        if not data.startswith(b"HTTP/1.1 200"):
            raise SystemExit("%s answered %r" % (url, data[:300]))
    return (arrived - sent[sample]) / 1000


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


server = socket.create_server(("127.0.0.1", 0))
port = server.getsockname()[1]
threading.Thread(target=upstream, args=(server,), daemon=True).start()
print(port, flush=True)
samples = int(sys.argv[1])
targets = json.loads(sys.stdin.readline())
out = {}
for name, prefix, header in targets:
    delays = [fetch(prefix + "/%s-%d" % (name, i), header, "%s-%d" % (name, i)) for i in range(samples)]
    out[name] = {"samples": samples, "p50_us": round(percentile(delays, 50), 1),
                 "p99_us": round(percentile(delays, 99), 1), "max_us": round(max(delays), 1)}
print(json.dumps(out), flush=True)
