#!/usr/bin/env python3
"""Side-by-side benchmark: direct-to-backend, HAProxy, NGINX and Weir on one machine.

Run through bench/run.sh (it installs the tools and builds Weir). Every load balancer runs
single-threaded pinned to the same CPU; the backends and the load generators share the other
CPU(s). Scenarios run in interleaved rounds (every system once per scenario per round, in a
rotating order); the table reports medians. Only 127.0.0.1 is ever sent traffic, every process
started here is stopped at the end, and every load run is bounded in time.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Backends (shared by all systems) and each load balancer's ports: base+0 HTTP, +1 HTTPS (h2),
# +2 TCP passthrough to the HTTP backend, +3 TCP (and UDP) passthrough to iperf3.
BACKEND_HTTP, BACKEND_HTTPS, BACKEND_IPERF = 18000, 18001, 18002
BASES = {"haproxy": 18100, "nginx": 18200, "weir": 18300}
SYSTEMS = ["direct", "haproxy", "nginx", "weir"]


def ports(system):
    if system == "direct":
        return {"http": BACKEND_HTTP, "https": BACKEND_HTTPS, "tcp": BACKEND_HTTP,
                "iperf": BACKEND_IPERF}
    b = BASES[system]
    return {"http": b, "https": b + 1, "tcp": b + 2, "iperf": b + 3}


# ---------------------------------------------------------------- processes and /proc


def cpu_sets():
    """(load balancer CPUs, load generator + backend CPUs) as taskset lists."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), ",".join(str(c) for c in cpus[1:])


def pinned(cpus, argv):
    return (["taskset", "-c", cpus] if cpus else []) + argv


def tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_times(pid):
    """CPU time on record for each thread of the process tree, in nanoseconds, by (pid, tid).

    From each thread's schedstat (the scheduler's own nanosecond count of time on a CPU, user
    and system together) rather than utime/stime, which count 10 ms ticks: at a fixed
    2 000 req/s a 5 s run uses a dozen ticks, so a tick more or less was ±8 %."""
    times = {}
    for p in tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    times[(p, tid)] = int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                # A kernel without schedstat: the thread's utime + stime ticks.
                try:
                    with open(f"/proc/{p}/task/{tid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    times[(p, tid)] = (int(fields[11]) + int(fields[12])) * 10**9 // CLK_TCK
                except (OSError, IndexError, ValueError):
                    pass
    return times


def cpu_seconds_between(before, after):
    """Seconds of CPU used between two `cpu_times` readings: each thread's growth, and all of a
    thread that started in between (one that ended in between loses only its share of the
    window, which idle helper threads do not have)."""
    return sum(t - before.get(k, 0) for k, t in after.items()) / 1e9


def rss_bytes(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_http(port, procs, timeout=60.0):
    """Until GET / through the port answers 200 (Weir's targets must turn healthy first)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        procs.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"127.0.0.1:{port} does not answer 200 after {timeout}s")


class Procs:
    """Started processes, stopped (TERM, then KILL) at exit."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = {}

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        self.procs[name] = p
        return p

    def check(self):
        """Fails if a started process has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited (log in {self.workdir}/{name}.log)")

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.time() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()


def make_certificate(weir, work):
    """A self-signed certificate for localhost made by `weir certificate`: (its directory, the
    PEM file)."""
    certs = os.path.join(work, "certs")
    subprocess.run([weir, "certificate", "bench", "--dns-name", "localhost",
                    "--certificate-dir", certs], check=True, capture_output=True)
    return certs, os.path.join(certs, "bench.pem")


def start_backend(work, cert, fds, procs, cpus=None):
    """Starts the NGINX backend (HTTP and HTTPS, a 23-byte body) every system proxies to."""
    with open(os.path.join(work, "backend.conf"), "w") as f:
        f.write(backend_nginx_conf(work, cert, fds))
    return procs.start("backend", pinned(cpus, ["nginx", "-p", work, "-c",
                                                os.path.join(work, "backend.conf")]))


# ---------------------------------------------------------------- configurations


def backend_nginx_conf(work, cert, fds):
    return f"""
worker_processes 1;
daemon off;
pid {work}/backend.pid;
error_log {work}/backend-error.log warn;
worker_rlimit_nofile {fds};
events {{ worker_connections {fds - 100}; }}
http {{
  access_log off;
  client_body_temp_path {work}/tmp-b1; proxy_temp_path {work}/tmp-b2;
  fastcgi_temp_path {work}/tmp-b3; uwsgi_temp_path {work}/tmp-b4; scgi_temp_path {work}/tmp-b5;
  keepalive_requests 100000000;
  server {{
    listen 127.0.0.1:{BACKEND_HTTP} backlog=4096;
    listen 127.0.0.1:{BACKEND_HTTPS} ssl http2 backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {cert};
    location / {{ return 200 "hello from the backend\\n"; }}
  }}
}}
"""


def haproxy_conf(cert, fds):
    p = ports("haproxy")
    return f"""
global
  nbthread 1
  maxconn {(fds - 200) // 2}
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  maxconn {(fds - 200) // 2}
frontend web
  mode http
  option forwardfor
  bind 127.0.0.1:{p['http']} backlog 4096
  bind 127.0.0.1:{p['https']} ssl crt {cert} alpn h2,http/1.1 backlog 4096
  default_backend web
backend web
  mode http
  http-reuse always
  server b1 127.0.0.1:{BACKEND_HTTP}
listen webtcp
  mode tcp
  bind 127.0.0.1:{p['tcp']} backlog 4096
  server b1 127.0.0.1:{BACKEND_HTTP}
listen iperf
  mode tcp
  bind 127.0.0.1:{p['iperf']}
  server b1 127.0.0.1:{BACKEND_IPERF}
"""


def nginx_lb_conf(work, cert, stream_module, fds):
    p = ports("nginx")
    return f"""
load_module {stream_module};
worker_processes 1;
daemon off;
pid {work}/nginx-lb.pid;
error_log {work}/nginx-lb-error.log warn;
worker_rlimit_nofile {fds};
events {{ worker_connections {fds - 100}; }}
http {{
  access_log off;
  client_body_temp_path {work}/tmp-l1; proxy_temp_path {work}/tmp-l2;
  fastcgi_temp_path {work}/tmp-l3; uwsgi_temp_path {work}/tmp-l4; scgi_temp_path {work}/tmp-l5;
  keepalive_requests 100000000;
  upstream web {{ server 127.0.0.1:{BACKEND_HTTP}; keepalive 256; keepalive_requests 100000000; }}
  server {{
    listen 127.0.0.1:{p['http']} backlog=4096;
    listen 127.0.0.1:{p['https']} ssl http2 backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {cert};
    location / {{
      proxy_pass http://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
stream {{
  server {{ listen 127.0.0.1:{p['tcp']} backlog=4096; proxy_pass 127.0.0.1:{BACKEND_HTTP}; }}
  server {{ listen 127.0.0.1:{p['iperf']}; proxy_pass 127.0.0.1:{BACKEND_IPERF}; }}
  server {{ listen 127.0.0.1:{p['iperf']} udp; proxy_pass 127.0.0.1:{BACKEND_IPERF}; proxy_timeout 60s; }}
}}
"""


# ---------------------------------------------------------------- load generators


def parse_duration(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    v = float(m.group(1))
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def run(argv, timeout):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr


def wrk(url, seconds, conns, load_cpus, work, extra=(), script=None):
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        argv += ["-s", script]
    argv += list(extra) + [url]
    out = run(pinned(load_cpus, argv), seconds + 30)
    res = {"requests": 0, "rps": 0.0, "errors": 0, "p50": None, "p99": None}
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"] += int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[key] = parse_duration(m.group(1))
    if res["requests"] == 0:
        print(out, file=sys.stderr)
    return res


def h2load(url, seconds, load_cpus):
    argv = ["h2load", "-c", "16", "-m", "16", "-t", "1", "-D", str(seconds), url]
    out = run(pinned(load_cpus, argv), seconds + 30)
    res = {"requests": 0, "rps": 0.0, "errors": 0}
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed,"
                  r" (\d+) errored, (\d+) timeout", out)
    if m:
        res["requests"] = int(m.group(2))
        res["errors"] = int(m.group(3)) + int(m.group(4)) + int(m.group(5))
    if res["requests"] == 0:
        print(out, file=sys.stderr)
    return res


def iperf(port, seconds, load_cpus, udp=False):
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"]
    if udp:
        argv += ["-u", "-b", "400M", "-l", "1200"]
    out = run(pinned(load_cpus, argv), seconds + 30)
    try:
        end = json.loads(out)["end"]
    except (ValueError, KeyError):
        print(out[-2000:], file=sys.stderr)
        return {"requests": 0, "rps": 0.0, "errors": 1}
    if udp:
        s = end["sum"]
        received = s["packets"] - s["lost_packets"]
        return {"requests": received, "rps": s["bits_per_second"] / 1e6 *
                (1 - s["lost_percent"] / 100), "loss": s["lost_percent"], "errors": 0}
    s = end["sum_received"]
    # "requests" for CPU accounting are megabytes moved.
    return {"requests": s["bytes"] / 1e6, "rps": s["bits_per_second"] / 1e9, "errors": 0}


def idle_connections(port, count):
    """Opens `count` idle connections (no request sent) and returns them."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


# ---------------------------------------------------------------- scenarios


SCENARIOS = [
    # key, title, unit of "rate", unit of CPU
    ("http1", "HTTP/1.1 keep-alive, 50 connections, saturating", "req/s", "µs/req"),
    ("http1_rate", "HTTP/1.1 keep-alive at a fixed ~2 000 req/s", "req/s", "µs/req"),
    ("h2", "HTTP/2 over TLS, 16 connections × 16 streams", "req/s", "µs/req"),
    ("tls", "TLS handshakes (new connection per request)", "conn/s", "µs/handshake"),
    ("tcp_rr", "L4 TCP request/response (HTTP through TCP passthrough)", "req/s", "µs/req"),
    ("tcp_rate", "L4 TCP request/response at a fixed ~2 000 req/s", "req/s", "µs/req"),
    ("tcp_bulk", "L4 TCP bulk (iperf3, 1 stream)", "Gbit/s", "µs/MB"),
    ("udp", "L4 UDP (iperf3, 400 Mbit/s offered, 1200-byte datagrams)", "Mbit/s", "µs/datagram"),
    ("idle", "RSS holding 10 000 idle client connections", "MiB", ""),
]


def rate_script(work):
    """wrk Lua: each connection waits 10 ms between requests; 20 connections ≈ 2 000 req/s."""
    path = os.path.join(work, "rate.lua")
    with open(path, "w") as f:
        f.write("function delay()\n  return 10\nend\n")
    return path


def run_scenario(key, system, lb_pid, args, load_cpus, work):
    p = ports(system)
    if system == "haproxy" and key == "udp":
        return None  # HAProxy has no UDP load balancing
    if key == "idle":
        target = lb_pid or args.backend_pid  # direct: the backend's own memory
        before = rss_bytes(target)
        socks = idle_connections(p["http"], args.idle)
        time.sleep(2)
        after = rss_bytes(target)
        for s in socks:
            s.close()
        time.sleep(1)
        # "rate" is the RSS holding 10 000 idle connections (growth scaled from args.idle).
        return {"rate": (before + (after - before) * 10000 / args.idle) / (1 << 20),
                "rest": before / (1 << 20), "cpu": None, "errors": 0}
    cpu0 = cpu_times(lb_pid) if lb_pid else {}
    d = args.duration
    if key == "http1":
        r = wrk(f"http://127.0.0.1:{p['http']}/", d, 50, load_cpus, work)
    elif key == "http1_rate":
        r = wrk(f"http://127.0.0.1:{p['http']}/", d, 20, load_cpus, work, script=rate_script(work))
    elif key == "h2":
        r = h2load(f"https://127.0.0.1:{p['https']}/", d, load_cpus)
    elif key == "tls":
        r = wrk(f"https://127.0.0.1:{p['https']}/", d, 20, load_cpus, work,
                extra=["-H", "Connection: close"])
    elif key == "tcp_rr":
        r = wrk(f"http://127.0.0.1:{p['tcp']}/", d, 50, load_cpus, work)
    elif key == "tcp_rate":
        r = wrk(f"http://127.0.0.1:{p['tcp']}/", d, 20, load_cpus, work, script=rate_script(work))
    elif key == "tcp_bulk":
        r = iperf(p["iperf"], d, load_cpus)
    elif key == "udp":
        r = iperf(p["iperf"], d, load_cpus, udp=True)
    else:
        raise ValueError(key)
    cpu = cpu_seconds_between(cpu0, cpu_times(lb_pid)) if lb_pid else None
    out = {"rate": r["rps"], "errors": r.get("errors", 0), "p50": r.get("p50"),
           "p99": r.get("p99"), "loss": r.get("loss")}
    out["cpu"] = cpu * 1e6 / r["requests"] if (cpu is not None and r["requests"]) else None
    return out


# ---------------------------------------------------------------- report


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def machine_info():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PHYS_PAGES") * PAGE / (1 << 30)
    versions = {}
    for name, argv in (("HAProxy", ["haproxy", "-v"]), ("NGINX", ["nginx", "-v"]),
                       ("wrk", ["wrk", "--version"]), ("h2load", ["h2load", "--version"]),
                       ("iperf3", ["iperf3", "--version"])):
        try:
            out = run(argv, 10).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            out = "?"
        versions[name] = out
    return cpu, mem, versions


def paired(rows, other):
    """Median over rounds of Weir's CPU / the other's in the same round. The systems of a round
    run back to back, so this ratio is immune to the host drifting between rounds (a slow phase
    catching one system in more rounds than another moves the medians, not this)."""
    rs = [w["cpu"] / o["cpu"] for w, o in zip(rows["weir"], rows[other])
          if w and o and w["cpu"] and o["cpu"]]
    return f"{statistics.median(rs):.2f}" if rs else "—"


def report(results, args, lb_cpus, load_cpus, path):
    cpu, mem, versions = machine_info()
    lines = [
        "# Benchmark results",
        "",
        f"Fresh run of `bench/run.sh` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Machine: {os.cpu_count()} × {cpu}, {mem:.0f} GiB, {platform.system()} {platform.release()}.",
        "Load balancers: " + "; ".join(f"{k}: `{v}`" for k, v in versions.items()) + ".",
        "",
        f"Every load balancer runs single-threaded (HAProxy `nbthread 1`, NGINX one worker, Weir "
        f"`TOKIO_WORKER_THREADS=1`) pinned to CPU {lb_cpus}; the backends (an NGINX answering a "
        f"23-byte body, an iperf3 server) and the clients (wrk, h2load, iperf3) share CPU "
        f"{load_cpus}. {args.rounds} interleaved rounds of {args.duration} s per scenario and "
        f"system; medians. \"direct\" is the client talking to the backend itself. CPU is the "
        f"load balancer's user+system time (all its processes and threads, from the scheduler's "
        f"nanosecond counts in schedstat) divided by the work done.",
        "Throughput on this 2-CPU machine is bounded by the client and backend sharing one CPU; "
        "CPU per request is the figure that compares the proxies. "
        f"Idle connections: {args.idle} opened (no request sent) once per system before any other "
        "traffic; RSS is that of all the load balancer's processes (for direct: the backend's), "
        "the growth scaled to 10 000.",
        "",
        "| Scenario | Metric | direct | HAProxy | NGINX | Weir | Weir / HAProxy | Weir / NGINX |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, title, unit, cpu_unit in SCENARIOS:
        if key not in args.only:
            continue
        rows = {s: results.get((key, s), []) for s in SYSTEMS}
        rate = {s: med([r["rate"] for r in rows[s] if r]) for s in SYSTEMS}
        cpu_ = {s: med([r["cpu"] for r in rows[s] if r]) for s in SYSTEMS}
        lines.append(f"| {title} | {unit} | " + " | ".join(fmt(rate[s]) for s in SYSTEMS) +
                     f" | {ratio(rate['weir'], rate['haproxy'])} | {ratio(rate['weir'], rate['nginx'])} |")
        if cpu_unit:
            lines.append(f"| | LB CPU {cpu_unit} | — | " +
                         " | ".join(fmt(cpu_[s], 2) for s in SYSTEMS[1:]) +
                         f" | {ratio(cpu_['weir'], cpu_['haproxy'])} | {ratio(cpu_['weir'], cpu_['nginx'])} |")
            if args.rounds > 1:
                lines.append("| | per-round CPU ratio, median | | | | | "
                             f"{paired(rows, 'haproxy')} | {paired(rows, 'nginx')} |")
        if key in ("http1_rate", "tcp_rate"):
            for pk in ("p50", "p99"):
                v = {s: med([r[pk] for r in rows[s] if r]) for s in SYSTEMS}
                lines.append(f"| | latency {pk} ms | " + " | ".join(fmt(v[s], 3) for s in SYSTEMS) +
                             f" | {ratio(v['weir'], v['haproxy'])} | {ratio(v['weir'], v['nginx'])} |")
        if key == "idle":
            v = {s: med([r["rest"] for r in rows[s] if r]) for s in SYSTEMS}
            lines.append("| | RSS at rest, MiB | " + " | ".join(fmt(v[s]) for s in SYSTEMS) +
                         f" | {ratio(v['weir'], v['haproxy'])} | {ratio(v['weir'], v['nginx'])} |")
        if key == "udp":
            v = {s: med([r["loss"] for r in rows[s] if r]) for s in SYSTEMS}
            lines.append("| | loss % | " + " | ".join(fmt(v[s], 2) for s in SYSTEMS) + " | | |")
        errs = {s: sum(r["errors"] for r in rows[s] if r) for s in SYSTEMS}
        if any(errs.values()):
            lines.append("| | errors (all rounds) | " + " | ".join(str(errs[s]) for s in SYSTEMS) +
                         " | | |")
    lines += [
        "",
        "Ratios below 1.00 in a CPU row mean Weir used less CPU than the other proxy for the same "
        "work; in a rate row, that Weir was slower. UDP has no HAProxy column: HAProxy does not "
        "load-balance UDP. The TLS row uses wrk with `Connection: close`, so every request is a "
        "new TCP connection and a full TLS handshake (wrk does not resume sessions). "
        "\"per-round CPU ratio, median\": Weir's CPU per unit of work divided by the other "
        "proxy's in the same round (they run back to back), the median over rounds — steadier "
        "than the ratio of medians when the host drifts between fast and slow phases.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weir", default=os.path.join(ROOT, "target", "release", "weir"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per run")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections to open")
    ap.add_argument("--only", default=",".join(k for k, *_ in SCENARIOS),
                    help="comma-separated scenarios")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    args.only = args.only.split(",")
    systems = args.systems.split(",")

    # As many descriptors as allowed (the load balancers inherit the limit). HAProxy wants two
    # per connection it accepts, so the idle-connection count is capped at what it accepts; the
    # table scales the measurement to 10 000.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds = min(hard if hard != resource.RLIM_INFINITY else 200000, 200000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fds, hard))
    args.idle = min(args.idle, (fds - 200) // 2 - 500)

    lb_cpus, load_cpus = cpu_sets()
    work = tempfile.mkdtemp(prefix="weir-bench-")
    procs = Procs(work)
    results = {}
    try:
        certs, cert = make_certificate(args.weir, work)
        args.backend_pid = start_backend(work, cert, fds, procs, load_cpus).pid
        procs.start("iperf3", pinned(load_cpus, ["iperf3", "-s", "-B", "127.0.0.1", "-p",
                                                  str(BACKEND_IPERF)]))
        wait_port(BACKEND_HTTP)
        wait_port(BACKEND_IPERF)

        lb_pids = {"direct": None}
        if "haproxy" in systems:
            with open(os.path.join(work, "haproxy.cfg"), "w") as f:
                f.write(haproxy_conf(cert, fds))
            lb_pids["haproxy"] = procs.start("haproxy", pinned(lb_cpus, [
                "haproxy", "-db", "-f", os.path.join(work, "haproxy.cfg")])).pid
        if "nginx" in systems:
            module = "/usr/lib/nginx/modules/ngx_stream_module.so"
            with open(os.path.join(work, "nginx-lb.conf"), "w") as f:
                f.write(nginx_lb_conf(work, cert, module, fds))
            lb_pids["nginx"] = procs.start("nginx-lb", pinned(lb_cpus, [
                "nginx", "-p", work, "-c", os.path.join(work, "nginx-lb.conf")])).pid
        if "weir" in systems:
            p = ports("weir")
            env = dict(os.environ, TOKIO_WORKER_THREADS="1", RUST_LOG="warn")
            lb_pids["weir"] = procs.start("weir", pinned(lb_cpus, [
                args.weir, "up", os.path.join(HERE, "weir.yaml"),
                "--api-address", "127.0.0.1:18399", "--dns-address", "off",
                "--certificate-dir", certs,
                "-p", f"HttpPort={p['http']}", "-p", f"HttpsPort={p['https']}",
                "-p", f"TcpPort={p['tcp']}", "-p", f"IperfPort={p['iperf']}",
                "-p", f"BackendPort={BACKEND_HTTP}", "-p", f"IperfBackendPort={BACKEND_IPERF}",
            ]), env=env).pid
        for s in systems:
            wait_http(ports(s)["http"], procs)
            wait_http(ports(s)["tcp"], procs)
        time.sleep(1)

        # Memory first, on fresh processes: later traffic leaves allocator pools behind that
        # would hide what idle connections cost. One measurement per system.
        if "idle" in args.only:
            for s in systems:
                procs.check()
                r = run_scenario("idle", s, lb_pids.get(s), args, load_cpus, work)
                results.setdefault(("idle", s), []).append(r)
                print(f"idle       {s:8} rss={fmt(r['rate'])} MiB rest={fmt(r['rest'])} MiB",
                      flush=True)
        for rnd in range(args.rounds):
            for key, title, *_ in SCENARIOS:
                if key not in args.only or key == "idle":
                    continue
                order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
                for s in order:
                    procs.check()
                    r = run_scenario(key, s, lb_pids.get(s), args, load_cpus, work)
                    results.setdefault((key, s), []).append(r)
                    if r:
                        print(f"round {rnd + 1} {key:10} {s:8} rate={fmt(r['rate'])} "
                              f"cpu={fmt(r['cpu'], 2)} errors={r['errors']}", flush=True)
                    time.sleep(0.5)
        report(results, args, lb_cpus, load_cpus, args.out)
    finally:
        procs.stop_all()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
