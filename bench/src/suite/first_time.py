"""First-time clients for xgate-bench's SYN-flood section: one connection (connect, GET, the
whole response, close) from each of the client namespace's addresses 10.77.0.FIRST..LAST, which
the server has never seen, CONCURRENCY at a time. Adds the addresses to the client's interface
first (an address already there is fine). Prints one JSON object: connections, failed, seconds,
rate (completed connections per second of the whole run) and per-connection times (ms)."""

import concurrent.futures
import json
import socket
import subprocess
import sys
import time

target, port, path, first, last, concurrency = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
addresses = ["10.77.0.%d" % host for host in range(first, last + 1)]
for address in addresses:
    subprocess.run(["ip", "addr", "add", address + "/24", "dev", "xg-cli"], stderr=subprocess.DEVNULL)
request = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, target)).encode()


def one(address):
    start = time.perf_counter()
    try:
        with socket.socket() as s:
            s.settimeout(10)
            s.bind((address, 0))
            s.connect((target, port))
            s.sendall(request)
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        ok = answer.startswith(b"HTTP/1.1 2")
    except OSError:
        ok = False
    return ok, (time.perf_counter() - start) * 1000.0


start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    results = list(pool.map(one, addresses))
seconds = time.perf_counter() - start
times = sorted(ms for ok, ms in results if ok)


def percentile(p):
    if not times:
        return 0.0
    return times[min(len(times) - 1, max(0, int(-(-p * len(times) // 100)) - 1))]


print(json.dumps({
    "connections": len(results),
    "failed": sum(1 for ok, _ in results if not ok),
    "seconds": seconds,
    "rate": len(times) / seconds,
    "p50_ms": percentile(50),
    "p99_ms": percentile(99),
    "max_ms": times[-1] if times else 0.0,
}))
