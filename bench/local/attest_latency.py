"""Latency of local attestation plus token exchange, one request at a time.

Usage: attest_latency.py SOCKET BROKER_URL N WARMUP

Three modes, each N timed iterations after WARMUP untimed ones:
  attest            a new connection to the unix socket, POST /v1/identity
                    (the kernel facts, the executable's hash from the
                    cache, an ES256 identity token)
  exchange          the RFC 8693 exchange alone, with one identity token
                    (the broker has it verified and cached after the first)
  attest+exchange   both, a new identity token each time (verified anew)
Prints one JSON object: per mode, p50/p90/p99/max in milliseconds.
"""

import http.client
import json
import socket
import sys
import time
import urllib.parse

sock_path, broker, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
url = urllib.parse.urlparse(broker)
tcp = http.client.HTTPConnection(url.hostname, url.port)
REQUEST = b"POST /v1/identity HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def attest():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(REQUEST)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.split()[1] == b"200", head
    return json.loads(body)["identity_token"]


def post(path, body, headers):
    tcp.request("POST", path, body=body, headers=headers)
    response = tcp.getresponse()
    payload = response.read()
    assert response.status in (200, 201), (response.status, payload)
    return json.loads(payload)


identity = attest()
task = post(
    "/v1/tasks",
    json.dumps({"purpose": "bench", "owner": "bench", "audiences": ["urn:bench"], "ttl_seconds": 3600}),
    {"Authorization": f"Bearer {identity}", "Content-Type": "application/json"},
)["id"]


def exchange(token):
    form = urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": "urn:bench",
        "task_id": task,
    })
    return post("/oauth2/token", form, {"Content-Type": "application/x-www-form-urlencoded"})


modes = {
    "attest": lambda: attest(),
    "exchange": lambda: exchange(identity),
    "attest+exchange": lambda: exchange(attest()),
}
out = {}
for name, call in modes.items():
    for _ in range(warmup):
        call()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    pick = lambda q: round(times[min(len(times) - 1, int(q * len(times)))], 3)
    out[name] = {"n": n, "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99), "max_ms": round(times[-1], 3)}
print(json.dumps(out))
