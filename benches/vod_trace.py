#!/usr/bin/env python3
"""Trace-driven VOD benchmark: mediaedge's memory + disk tiers beside nginx
proxy_cache (disk) and Varnish (malloc), in one run, against one nginx origin.

A catalogue of N segments with Zipf(s) popularity, a working set about four
times the memory budget, replayed by concurrent keep-alive clients; every
server gets the same trace. Reported per server: object and byte hit ratio
(from each server's own hit header) over the second half of the trace (the
first half warms the caches), throughput, server CPU per request, p99 time to
first byte. Then CPU per disk hit (a catalogue within the disk budget, every
request a disk hit for mediaedge, beside nginx serving its cache files), the restart run (mediaedge: SIGKILL halfway, restart, hit
ratio in the window after against the window before) and the scan run (a
one-pass crawl of the whole catalogue in the middle of the trace: hit ratio of
the hot set before and after).

Run through benches/vod_trace.sh (which builds the release binary). Knobs
(environment): SEGMENTS, SEG_KIB, MEMORY_MIB, DISK_MIB, REQUESTS, HIT_REQUESTS, CLIENTS,
ZIPF, WINDOW, SEED, SEGMENT_MIB, RESTART_RATE; EDGE_ONLY=1 runs the mediaedge rows alone (no reference:
for trying changes, not for reporting); SECTIONS (default
"trace,hits,restart,scan") picks the parts to run.

nginx's cache manager trims `max_size` after the fact, so its cache directory
can hold more than the disk budget: its size at the end of nginx's run is
printed under the table.
"""
import bisect
import http.client
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ports import H, free_port, wait_port

E = os.environ
SEGMENTS = int(E.get("SEGMENTS", 512))
SEG_KIB = int(E.get("SEG_KIB", 256))
MEMORY_MIB = int(E.get("MEMORY_MIB", 32))
DISK_MIB = int(E.get("DISK_MIB", 96))
REQUESTS = int(E.get("REQUESTS", 8000))
HIT_REQUESTS = int(E.get("HIT_REQUESTS", 6000))
CLIENTS = int(E.get("CLIENTS", 8))
ZIPF = float(E.get("ZIPF", 0.8))
WINDOW = int(E.get("WINDOW", 1500))
SEED = int(E.get("SEED", 1))
EDGE_ONLY = E.get("EDGE_ONLY") == "1"
# The edge's disk segment size (unset: its default, size / 8).
SEGMENT_MIB = E.get("SEGMENT_MIB")
EDGE = E.get("EDGE_BIN", "target/release/mediaedge")
# nginx held to max_size: the trace is replayed in chunks of this many
# requests, and after each, the run waits until nginx's cache manager has
# trimmed its directory back to max_size (it checks every 10 s at most).
HELD_CHUNK = int(E.get("HELD_CHUNK", 400))
# Paces the restart run (requests/s): its windows are then the minute before
# the kill and the minute after the restart.
RESTART_RATE = E.get("RESTART_RATE")
SECTIONS = set(E.get("SECTIONS", "trace,hits,restart,scan").split(","))


def tree_cpu(pid):
    """utime + stime (seconds) of a process and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                rest = s[s.rindex(")") + 2:].split()
                stats[int(d)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / ticks)
            except (OSError, ValueError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
        todo += [c for c, (pp, _) in stats.items() if pp == p]
    return total


def trace(n, rng):
    weights = [1 / (i + 1) ** ZIPF for i in range(SEGMENTS)]
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    # Ranks are shuffled over the catalogue so popularity is not by name.
    names = list(range(SEGMENTS))
    random.Random(SEED + 99).shuffle(names)
    return [names[bisect.bisect_left(cum, rng.random() * acc)] for _ in range(n)], names


def replay(port, items, hit_header, rate=None):
    """Requests `items` with CLIENTS keep-alive clients (request i not before
    i / rate seconds, with a rate); returns per-request (index, hit, bytes,
    ttfb) and the wall time."""
    results = [None] * len(items)
    nxt = [0]
    lock = threading.Lock()
    start = time.perf_counter()

    def worker():
        conn = http.client.HTTPConnection(H, port, timeout=60)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(items):
                break
            if rate:
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t0 = time.perf_counter()
            for attempt in range(3):
                try:
                    conn.request("GET", f"/vod/seg{items[i]:05d}.m4s")
                    r = conn.getresponse()
                    ttfb = time.perf_counter() - t0
                    body = r.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(H, port, timeout=60)
                    if attempt == 2:
                        raise
            hit = hit_header(r.getheader)
            results[i] = (items[i], hit, len(body), ttfb, r.status)
        conn.close()

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, time.perf_counter() - t0


def ratios(rs):
    n = len(rs)
    hits = sum(1 for r in rs if r[1])
    b = sum(r[2] for r in rs)
    hb = sum(r[2] for r in rs if r[1])
    return hits / n if n else 0.0, hb / b if b else 0.0


def du(path):
    """(apparent bytes, allocated bytes, files) of the regular files under path."""
    size = blocks = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            size += st.st_size
            blocks += st.st_blocks * 512
            files += 1
    return size, blocks, files


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else 0.0


class Servers:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.origin_port = free_port()
        www = f"{tmp}/www/vod"
        os.makedirs(www)
        rng = random.Random(SEED)
        for i in range(SEGMENTS):
            with open(f"{www}/seg{i:05d}.m4s", "wb") as f:
                f.write(rng.randbytes(SEG_KIB * 1024))
        self.nginx_conf("origin", self.origin_port, f"""
            location / {{ root {tmp}/www; expires 1d; }}""")
        self.start("origin", ["nginx", "-p", f"{tmp}/origin", "-e", f"{tmp}/origin/error.log",
                              "-c", f"{tmp}/origin/nginx.conf"], self.origin_port)

    def nginx_conf(self, name, port, body, http_extra=""):
        d = f"{self.tmp}/{name}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(f"""daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/ptmp; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  {http_extra}
  server {{ listen {H}:{port}; {body} }}
}}
""")

    def start(self, name, cmd, port):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{self.tmp}/{name}.log", "w"),
                             start_new_session=True)
        self.procs.append(p)
        wait_port(port, p, name)
        return p

    def nginx_cache(self):
        port = free_port()
        d = f"{self.tmp}/nginx"
        shutil.rmtree(f"{d}/cache", ignore_errors=True)
        self.nginx_conf("nginx", port, f"""
            location / {{ proxy_pass http://{H}:{self.origin_port}; proxy_cache vod;
              proxy_cache_lock on; proxy_http_version 1.1; proxy_set_header Connection "";
              add_header X-Cache-Status $upstream_cache_status; }}""",
                        f"proxy_cache_path {d}/cache levels=1:2 keys_zone=vod:8m max_size={DISK_MIB}m "
                        f"inactive=1d use_temp_path=off;")
        p = self.start("nginx", ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf"], port)
        return p, port, lambda h: (h("X-Cache-Status") or "") == "HIT"

    def varnish(self):
        port = free_port()
        d = f"{self.tmp}/varnish"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/default.vcl", "w") as f:
            f.write(f"""vcl 4.1;
backend origin {{ .host = "{H}"; .port = "{self.origin_port}"; }}
sub vcl_deliver {{ if (obj.hits > 0) {{ set resp.http.X-Cache = "HIT"; }} else {{ set resp.http.X-Cache = "MISS"; }} }}
""")
        os.chmod(f"{d}/default.vcl", 0o644)
        p = self.start("varnish", ["varnishd", "-F", "-a", f"{H}:{port}", "-f", f"{d}/default.vcl",
                                   "-s", f"malloc,{MEMORY_MIB + DISK_MIB}m", "-n", f"{d}/work", "-T", f"{H}:0",
                                   "-p", "thread_pools=1"], port)
        return p, port, lambda h: (h("X-Cache") or "") == "HIT"

    def edge(self, name, admission, fresh=True, memory_mib=None):
        d = f"{self.tmp}/{name}"
        if fresh:
            shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, exist_ok=True)
        port = free_port()
        self.admin_port = free_port()
        with open(f"{d}/edge.toml", "w") as f:
            f.write(f"""[admin]
token = "vod-trace-token-0123456789"

[cache]
memory = "{memory_mib or MEMORY_MIB}MiB"

[cache.disk]
path = "{d}/cache"
size = "{DISK_MIB}MiB"
admission = "{admission}"
{f'segment_size = "{SEGMENT_MIB}MiB"' if SEGMENT_MIB else ""}

[[distributions]]
id = "EVOD"
aliases = ["*"]

[[distributions.origins]]
id = "o"
url = "http://{H}:{self.origin_port}"

[distributions.default_behavior]
origin = "o"
""")
        p = self.start(name, [EDGE, "serve", "--config", f"{d}/edge.toml", "--listen", f"{H}:{port}",
                              "--admin-listen", f"{H}:{self.admin_port}", "--state-dir", f"{d}/state"], port)
        return p, port, lambda h: (h("X-Cache") or "").startswith("Hit")

    def stop(self, p, sig=signal.SIGTERM):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        p.wait()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                self.stop(p)


def main():
    tmp = tempfile.mkdtemp(prefix="vod-trace-")
    os.chmod(tmp, 0o755)
    s = Servers(tmp)
    try:
        run(s)
    finally:
        s.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


TIERS = []


def tiers(s):
    """The edge's per-tier counters at the end of a run (printed after the table)."""
    import urllib.request
    req = urllib.request.Request(f"http://{H}:{s.admin_port}/metrics",
                                 headers={"Authorization": "Bearer vod-trace-token-0123456789"})
    try:
        text = urllib.request.urlopen(req, timeout=10).read().decode()
    except OSError as e:
        TIERS.append(f"(metrics unavailable: {e})")
        return
    keep = ("mediaedge_cache_tier_", "mediaedge_disk_writes_total", "mediaedge_disk_evictions_total",
            "mediaedge_disk_copied_forward_total", "mediaedge_disk_admissions_refused_total",
            "mediaedge_disk_promotions_total", "mediaedge_cache_evictions_total",
            "mediaedge_disk_write_backs_total", "mediaedge_disk_released_total")
    TIERS.append(" ".join(l for l in text.splitlines() if l.startswith(keep)))


class Occupancy(threading.Thread):
    """Samples the size of a cache directory every 0.2 s while a run goes on
    (nginx's cache manager trims `max_size` only every few seconds)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.samples, self.done = path, [], threading.Event()
        self.active = True

    def run(self):
        while not self.done.wait(0.2):
            if self.active:
                self.samples.append(du(self.path)[0])

    def stop(self):
        self.done.set()
        self.join()
        xs = self.samples or [0]
        return sum(xs) / len(xs), max(xs)


def measure(s, start, items, held=False):
    """Replays the trace; `held` (nginx): in chunks, waiting after each until
    nginx's cache directory is back within max_size (the wait is not counted
    in the wall time; the manager's CPU is counted)."""
    p, port, hit = start()
    nginx = start == s.nginx_cache
    watch = Occupancy(f"{s.tmp}/nginx/cache") if nginx else None
    if watch:
        watch.start()
    cpu0 = tree_cpu(p.pid)
    chunk = HELD_CHUNK if held else len(items)
    rs, wall, waited = [], 0.0, 0.0
    for at in range(0, len(items), chunk):
        part, w = replay(port, items[at:at + chunk], hit)
        rs += part
        wall += w
        if held:
            watch.active = False
            t0 = time.perf_counter()
            while du(f"{s.tmp}/nginx/cache")[0] > DISK_MIB * 2**20 and time.perf_counter() - t0 < 15:
                time.sleep(0.05)
            waited += time.perf_counter() - t0
            watch.active = True
    cpu = tree_cpu(p.pid) - cpu0
    if watch:
        mean, peak = watch.stop()
        s.nginx_occupancy = (mean, peak, wall, waited)
    if getattr(s, "admin_port", None) and start.__name__ == "<lambda>":
        tiers(s)
    s.stop(p)
    bad = [r for r in rs if not r or r[4] != 200]
    assert not bad, f"{len(bad)} requests failed, e.g. {bad[:3]}"
    return rs, wall, cpu


def run(s):
    items, names = trace(REQUESTS, random.Random(SEED))
    total_mib = SEGMENTS * SEG_KIB / 1024
    print(f"catalogue {SEGMENTS} x {SEG_KIB} KiB = {total_mib:.0f} MiB, Zipf({ZIPF}), {REQUESTS} requests, "
          f"{CLIENTS} clients; memory {MEMORY_MIB} MiB, disk {DISK_MIB} MiB "
          f"(Varnish malloc {MEMORY_MIB + DISK_MIB} MiB); figures over the second half\n")
    print("| server | object hit ratio | byte hit ratio | origin offload (bytes) | req/s | server CPU µs/req | p99 first byte ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [
        ("nginx proxy_cache (disk)", s.nginx_cache),
        ("nginx proxy_cache (disk), held to max_size", s.nginx_cache),
        ("Varnish (malloc)", s.varnish),
        ("mediaedge second-hit", lambda: s.edge("edge-2nd", "second-hit")),
        ("mediaedge always", lambda: s.edge("edge-always", "always")),
    ]
    if EDGE_ONLY:
        rows = rows[3:]
    if "trace" in SECTIONS:
        notes = []
        for name, start in rows:
            held = "held" in name
            rs, wall, cpu = measure(s, start, items, held)
            if start == s.nginx_cache:
                size, blocks, files = du(f"{s.tmp}/nginx/cache")
                mean, peak, wall, waited = s.nginx_occupancy
                how = (f"replayed in chunks of {HELD_CHUNK} requests, {waited:.0f} s of waits for its manager"
                       if held else "its cache manager checks the size every 10 s at most")
                notes.append(f"{name}: its cache directory at the end of its run: {files} files, "
                             f"{size / 2**20:.1f} MiB ({blocks / 2**20:.1f} MiB allocated) against max_size "
                             f"{DISK_MIB} MiB; while requests ran ({wall:.1f} s): mean {mean / 2**20:.1f} MiB, "
                             f"peak {peak / 2**20:.1f} MiB ({how})")
            half = rs[len(rs) // 2:]
            o, b = ratios(half)
            print(f"| {name} | {o:.3f} | {b:.3f} | {b:.1%} | {len(rs) / wall:.0f} | {cpu / len(rs) * 1e6:.0f} | "
                  f"{p99([r[3] for r in half]) * 1000:.1f} |")
            sys.stdout.flush()
        for n in notes:
            print(f"\n{n}")
        for t in TIERS:
            print(f"\nmediaedge counters at the end of a run: {t}")
        TIERS.clear()

    if "hits" in SECTIONS:
        disk_hits(s)
    if "restart" in SECTIONS:
        restart(s, items)
    if "scan" in SECTIONS:
        scan(s, items, names, rows)


def restart(s, items):
    """SIGKILL halfway, restart on the same directory. With RESTART_RATE
    (requests/s), the trace is paced and the windows are the minute before
    the kill and the minute after the restart."""
    rate = float(RESTART_RATE) if RESTART_RATE else None
    window = int(60 * rate) if rate else WINDOW
    what = f"the minute ({window} requests at {rate:.0f}/s)" if rate else f"{window} requests"
    print(f"\nRestart run (mediaedge second-hit): the trace, SIGKILL halfway, a restart, the rest of the trace; "
          f"windows of {what}")
    p, port, hit = s.edge("edge-restart", "second-hit")
    first, _ = replay(port, items[: len(items) // 2], hit, rate)
    s.stop(p, signal.SIGKILL)
    t0 = time.perf_counter()
    p, port, hit = s.edge("edge-restart", "second-hit", fresh=False)
    up = time.perf_counter() - t0
    second, _ = replay(port, items[len(items) // 2:], hit, rate)
    s.stop(p)
    before, after = ratios(first[-window:]), ratios(second[:window])
    print(f"| window | object hit ratio | byte hit ratio |\n|---|---:|---:|")
    print(f"| before the kill | {before[0]:.3f} | {before[1]:.3f} |\n| after the restart | {after[0]:.3f} | {after[1]:.3f} |")
    print(f"after / before (object): {after[0] / max(before[0], 1e-9):.3f}; restart to listening: {up:.2f} s")


def scan(s, items, names, rows):
    """A one-pass crawl of the whole catalogue in the middle of the trace."""
    hot = set(names[: max(1, SEGMENTS // 10)])
    crawl = list(range(SEGMENTS))
    print(f"\nScan run: the trace, a one-pass crawl of all {SEGMENTS} segments, the trace again; "
          f"hit ratio of the hot set (top {len(hot)} ranks) in the {WINDOW} requests before and after the crawl")
    print("| server | hot hit ratio before | after | change (points) |\n|---|---:|---:|---:|")
    for name, start in [r for r in rows if "held" not in r[0]]:
        p, port, hit = start()
        a, _ = replay(port, items[: len(items) // 2], hit)
        replay(port, crawl, hit)
        b, _ = replay(port, items[len(items) // 2:], hit)
        s.stop(p)
        ha = ratios([r for r in a[-WINDOW:] if r[0] in hot])[0]
        hb = ratios([r for r in b[:WINDOW] if r[0] in hot])[0]
        print(f"| {name} | {ha:.3f} | {hb:.3f} | {(hb - ha) * 100:+.1f} |")
        sys.stdout.flush()


def disk_hits(s):
    """CPU per disk hit: a catalogue that fits the disk budget, warmed, then
    requested uniformly at random. mediaedge runs with 1 MiB of memory (its
    largest memory object is 128 KiB), so every segment is streamed to disk
    at its fill and every later request is a disk hit, never promoted; nginx
    serves its cache files (from the page cache, as mediaedge's reads are)."""
    n = min(SEGMENTS, int(DISK_MIB * 1024 / SEG_KIB * 0.6))
    rng = random.Random(SEED + 7)
    warm = [i for i in range(n) for _ in range(3)]
    items = [rng.randrange(n) for _ in range(HIT_REQUESTS)]
    print(f"\nDisk hits: {n} segments ({n * SEG_KIB / 1024:.0f} MiB) warmed (3 requests each), then "
          f"{HIT_REQUESTS} requests uniformly at random; mediaedge with 1 MiB of memory (every hit from disk)")
    print("| server | hit ratio | req/s | server CPU µs/req |\n|---|---:|---:|---:|")
    rows = [("nginx proxy_cache (disk)", s.nginx_cache),
            ("mediaedge always", lambda: s.edge("edge-hits", "always", memory_mib=1))]
    if EDGE_ONLY:
        rows = rows[1:]
    for name, start in rows:
        p, port, hit = start()
        replay(port, warm, hit)
        time.sleep(1)
        cpu0 = tree_cpu(p.pid)
        rs, wall = replay(port, items, hit)
        cpu = tree_cpu(p.pid) - cpu0
        s.stop(p)
        bad = [r for r in rs if not r or r[4] != 200]
        assert not bad, f"{len(bad)} requests failed, e.g. {bad[:3]}"
        print(f"| {name} | {ratios(rs)[0]:.3f} | {len(rs) / wall:.0f} | {cpu / len(rs) * 1e6:.0f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
