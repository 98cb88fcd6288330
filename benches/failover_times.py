#!/usr/bin/env python3
"""Failover times: how long viewers wait when an origin group's primary fails,
mediaedge beside nginx (upstream with a backup server) in the same run.

Two nginx origins serve the same 64 KiB object, each naming itself in
`X-Served-By`, with `Cache-Control: no-store` so every request goes through
to an origin. CLIENTS keep-alive clients request it back to back through
the proxy under test. After WARM seconds the primary fails in one of three
ways, then the run goes on for AFTER seconds:

- refused:    the primary's processes are killed (connections refused)
- blackholed: the primary's processes are stopped (SIGSTOP): the kernel still
              accepts connections, nothing ever answers
- 503:        the primary answers 503 to everything

Both proxies get the same limits: one connection attempt, a 1 s connect
timeout and a 1 s read timeout on the primary; a member is set aside after 5
failures for 10 s (mediaedge: `eject_after`/`eject_for`; nginx: `max_fails`,
`fail_timeout`). Reported per scenario and proxy: the time from the failure
to the first answer from the secondary, the longest request after it, the
median request after it (after the first answer from the secondary), how
many requests took more than 500 ms, and how many failed (any status but
200, or a broken connection).

Run through benches/failover_times.sh (which builds the release binary).
Knobs (environment): CLIENTS, WARM, AFTER, RUNS.
"""
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ports import H, free_port, wait_port

E = os.environ
CLIENTS = int(E.get("CLIENTS", 4))
WARM = float(E.get("WARM", 2))
AFTER = float(E.get("AFTER", 5))
RUNS = int(E.get("RUNS", 1))
EDGE = E.get("EDGE_BIN", "target/release/mediaedge")


NGINX_HTTP = """daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 100000;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/ptmp; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  {extra}
  server {{ listen {H}:{port} backlog=4096; {body} }}
}}
"""


class Run:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        # nginx's worker may run as another user: it must read the object.
        os.chmod(tmp, 0o755)
        os.makedirs(f"{tmp}/www")
        with open(f"{tmp}/www/seg.m4s", "wb") as f:
            f.write(os.urandom(64 * 1024))

    def start(self, name, argv, port):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(f"{self.tmp}/{name}.log", "ab"),
                             start_new_session=True)
        self.procs.append(p)
        wait_port(port, p, name)
        return p

    def nginx(self, name, body, extra=""):
        d = f"{self.tmp}/{name}"
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        port = free_port()
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX_HTTP.format(d=d, H=H, port=port, body=body, extra=extra))
        p = self.start(name, ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf"], port)
        return p, port

    def origin(self, name):
        return self.nginx(name, f"""
            location / {{
              if (-f {self.tmp}/{name}.down) {{ return 503; }}
              rewrite ^ /seg.m4s break; root {self.tmp}/www;
              add_header X-Served-By {name} always; add_header Cache-Control no-store always; }}""")

    def edge(self, a, b):
        d = f"{self.tmp}/edge"
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        port = free_port()
        with open(f"{d}/edge.toml", "w") as f:
            f.write(f"""[[distributions]]
id = "EFAILOVER"
aliases = ["*"]

[[distributions.origins]]
id = "a"
url = "http://{H}:{a}"
connection_attempts = 1
connect_timeout = "1s"
read_timeout = "1s"

[[distributions.origins]]
id = "b"
url = "http://{H}:{b}"

[[distributions.origin_groups]]
id = "g"
members = ["a", "b"]
eject_after = 5
eject_for = "10s"

[distributions.default_behavior]
origin = "g"
""")
        p = self.start("edge", [EDGE, "serve", "--config", f"{d}/edge.toml", "--listen", f"{H}:{port}",
                                "--admin-listen", "off"], port)
        return p, port

    def nginx_proxy(self, a, b):
        return self.nginx("proxy", """
            location / { proxy_pass http://og; proxy_http_version 1.1; proxy_set_header Connection "";
              proxy_connect_timeout 1s; proxy_read_timeout 1s;
              proxy_next_upstream error timeout http_500 http_502 http_503 http_504; }""",
                          f"upstream og {{ server {H}:{a} max_fails=5 fail_timeout=10s; "
                          f"server {H}:{b} backup; keepalive 32; }}")

    def stop_all(self):
        for p in self.procs:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            p.wait()
        self.procs = []


def clients(port, stop_at):
    """CLIENTS keep-alive clients back to back until `stop_at`; returns
    (start, end, status, served_by) per request (status 0: broken)."""
    out = []
    lock = threading.Lock()

    def worker(n):
        conn = http.client.HTTPConnection(H, port, timeout=30)
        mine = []
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/c{n}/seg.m4s")
                r = conn.getresponse()
                r.read()
                mine.append((t0, time.perf_counter(), r.status, r.getheader("X-Served-By") or ""))
            except (OSError, http.client.HTTPException):
                mine.append((t0, time.perf_counter(), 0, ""))
                conn.close()
                conn = http.client.HTTPConnection(H, port, timeout=30)
        conn.close()
        with lock:
            out.extend(mine)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def fail(scenario, run, primary):
    if scenario == "refused":
        os.killpg(primary.pid, signal.SIGKILL)
    elif scenario == "blackholed":
        os.killpg(primary.pid, signal.SIGSTOP)
    else:
        open(f"{run.tmp}/a.down", "w").close()


def measure(scenario, proxy):
    tmp = tempfile.mkdtemp(prefix="failover-")
    run = Run(tmp)
    try:
        primary, a = run.origin("a")
        _, b = run.origin("b")
        _, port = run.edge(a, b) if proxy == "mediaedge" else run.nginx_proxy(a, b)
        t_fail = time.perf_counter() + WARM
        result = {}

        def failer():
            time.sleep(max(0.0, t_fail - time.perf_counter()))
            fail(scenario, run, primary)

        th = threading.Thread(target=failer)
        th.start()
        reqs = clients(port, t_fail + AFTER)
        th.join()
        before = [r for r in reqs if r[1] < t_fail]
        after = [r for r in reqs if r[0] >= t_fail or r[1] >= t_fail]
        from_b = sorted(r[1] for r in after if r[3] == "b" and r[2] == 200)
        first_b = from_b[0] - t_fail if from_b else float("nan")
        settled = sorted(r[1] - r[0] for r in after if from_b and r[0] >= from_b[0])
        result.update(
            before=len(before),
            before_ok=all(r[2] == 200 and r[3] == "a" for r in before),
            after=len(after),
            first_b_ms=first_b * 1000,
            worst_ms=max((r[1] - r[0] for r in after), default=0) * 1000,
            median_ms=(settled[len(settled) // 2] * 1000) if settled else float("nan"),
            slow=sum(1 for r in after if r[1] - r[0] > 0.5),
            failed=sum(1 for r in after if r[2] != 200),
        )
        return result
    finally:
        run.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    print(f"# failover times: {CLIENTS} clients, primary fails after {WARM:g} s, "
          f"{AFTER:g} s measured after, {RUNS} run(s)\n")
    print("| primary | proxy | run | requests before / after | first answer from secondary | "
          "longest request after | median after failover | requests > 500 ms | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in ("refused", "blackholed", "503"):
        for r in range(RUNS):
            for proxy in ("nginx", "mediaedge"):
                m = measure(scenario, proxy)
                warm = "" if m["before_ok"] else " (warm-up not all from primary)"
                print(f"| {scenario} | {proxy} | {r + 1} | {m['before']} / {m['after']}{warm} | "
                      f"{m['first_b_ms']:.1f} ms | {m['worst_ms']:.1f} ms | {m['median_ms']:.2f} ms | "
                      f"{m['slow']} | {m['failed']} |", flush=True)


if __name__ == "__main__":
    main()
