#!/usr/bin/env python3
"""User-space instructions per request of HAProxy, NGINX and Weir, counted by callgrind.

CPU time on a shared host moves by tens of percent between runs; instruction counts do not. Each
load balancer runs under `valgrind --tool=callgrind` with the same configuration bench.py gives it,
a fixed number of requests goes through it with h2load (HTTP/1.1 keep-alive to the HTTP listener,
the same through the L4 TCP passthrough, HTTP/2 over TLS), and the instructions it executed in
user space during that load (counters zeroed before, dumped after) are divided by the requests.
The kernel's share (system calls, TCP) is not counted: bench.py's CPU rows include it.

    python3 bench/instructions.py                          # all systems, all scenarios
    python3 bench/instructions.py --systems haproxy,weir --only tcp --requests 5000
    python3 bench/instructions.py --weir /tmp/old-weir     # another build, for an A/B

Needs valgrind (apt-get install valgrind) besides what bench/run.sh installs. Only 127.0.0.1 is
sent traffic; every process started is stopped at the end.
"""

import argparse
import datetime
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the configurations and process helpers are shared)

SCENARIOS = {
    "http1": ("HTTP/1.1 keep-alive, 20 connections", "http", ["--h1", "-c", "20"]),
    "tcp": ("L4 TCP passthrough, HTTP/1.1 keep-alive, 20 connections", "tcp", ["--h1", "-c", "20"]),
    "h2": ("HTTP/2 over TLS, 16 connections × 16 streams", "https", ["-c", "16", "-m", "16"]),
}
FDS = 4096


def start(system, args, work, cert, certs, procs, out):
    """Starts `system` under callgrind; returns its ports."""
    vg = ["valgrind", "--tool=callgrind", "--trace-children=yes",
          f"--callgrind-out-file={out}.%p"]
    if system == "haproxy":
        with open(os.path.join(work, "haproxy.cfg"), "w") as f:
            f.write(bench.haproxy_conf(cert, FDS))
        procs.start(system, vg + ["haproxy", "-db", "-f", os.path.join(work, "haproxy.cfg")])
    elif system == "nginx":
        conf = bench.nginx_lb_conf(work, cert, "/usr/lib/nginx/modules/ngx_stream_module.so", FDS)
        # One process: a worker forked under valgrind would run as another user.
        conf = conf.replace("daemon off;", "daemon off;\nmaster_process off;", 1)
        with open(os.path.join(work, "nginx-lb.conf"), "w") as f:
            f.write(conf)
        procs.start(system, vg + ["nginx", "-p", work, "-c", os.path.join(work, "nginx-lb.conf")])
    else:
        p = bench.ports("weir")
        # Plain TCP through epoll: under valgrind the io_uring relay does not answer.
        env = dict(os.environ, TOKIO_WORKER_THREADS="1", RUST_LOG="warn", WEIR_IO_URING="off")
        procs.start(system, vg + [
            args.weir, "up", os.path.join(HERE, "weir.yaml"),
            "--api-address", "127.0.0.1:18399", "--dns-address", "off",
            "--certificate-dir", certs,
            "-p", f"HttpPort={p['http']}", "-p", f"HttpsPort={p['https']}",
            "-p", f"TcpPort={p['tcp']}", "-p", f"IperfPort={p['iperf']}",
            "-p", f"BackendPort={bench.BACKEND_HTTP}",
            "-p", f"IperfBackendPort={bench.BACKEND_IPERF}",
        ], env=env)
    p = bench.ports(system)
    bench.wait_http(p["http"], procs, 300)
    bench.wait_http(p["tcp"], procs, 300)
    time.sleep(2)
    return p


def measure(system, key, p, args, out):
    """Instructions per request of one scenario against a running system."""
    _, port_key, flags = SCENARIOS[key]
    scheme = "https" if port_key == "https" else "http"
    subprocess.run(["callgrind_control", "-z"], capture_output=True, check=False)
    r = subprocess.run(["h2load", *flags, "-n", str(args.requests),
                        f"{scheme}://127.0.0.1:{p[port_key]}/"],
                       capture_output=True, text=True, timeout=900, check=False)
    done = re.search(r"(\d+) succeeded", r.stdout)
    done = int(done.group(1)) if done else 0
    for f in glob.glob(out + ".*"):
        os.remove(f)
    subprocess.run(["callgrind_control", "-d", key], capture_output=True, check=False)
    total, deadline = 0, time.time() + 30
    while time.time() < deadline:
        files = glob.glob(out + ".*")
        totals = [_total(f) for f in files]
        if files and all(t is not None for t in totals):
            total = sum(totals)
            break
        time.sleep(0.5)
    if done != args.requests:
        raise RuntimeError(f"{system} {key}: {done} of {args.requests} requests succeeded")
    return total / done


def _total(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weir", default=os.path.join(bench.ROOT, "target", "release", "weir"))
    ap.add_argument("--systems", default="haproxy,nginx,weir")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--out", help="also write the table, with the run's details, to this file")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    systems = args.systems.split(",")
    keys = [k for k in args.only.split(",") if k in SCENARIOS]
    results = {}
    work = tempfile.mkdtemp(prefix="weir-instr-")
    try:
        certs, cert = bench.make_certificate(args.weir, work)
        backend = bench.Procs(work)
        bench.start_backend(work, cert, FDS, backend)
        try:
            bench.wait_port(bench.BACKEND_HTTP)
            for s in systems:
                procs = bench.Procs(work)
                out = os.path.join(work, f"callgrind-{s}")
                try:
                    p = start(s, args, work, cert, certs, procs, out)
                    for k in keys:
                        results[(k, s)] = measure(s, k, p, args, out)
                        print(f"{k:6} {s:8} {results[(k, s)]:,.0f} instructions/request",
                              flush=True)
                finally:
                    procs.stop_all()
        finally:
            backend.stop_all()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = [s for s in ("haproxy", "nginx", "weir") if s in systems]
    names = {"haproxy": "HAProxy", "nginx": "NGINX", "weir": "Weir"}
    ratios = [o for o in ("haproxy", "nginx") if o in systems and "weir" in systems]
    lines = ["| Scenario | " + " | ".join(names[c] for c in cols)
             + "".join(f" | Weir / {names[o]}" for o in ratios) + " |",
             "| --- " * (1 + len(cols) + len(ratios)) + "|"]
    for k in keys:
        row = [f"{results[(k, c)]:,.0f}".replace(",", " ") for c in cols]
        row += [f"{results[(k, 'weir')] / results[(k, o)]:.2f}" for o in ratios]
        lines.append(f"| {SCENARIOS[k][0]} | " + " | ".join(row) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.out, "w") as f:
            f.write(f"""# Instructions per request

Run of `python3 bench/instructions.py --requests {args.requests}` on {when}: user-space
instructions (callgrind) each load balancer executed per request while h2load sent
{args.requests} requests, the same configurations as bench/RESULTS.md (backend: an NGINX answering
a 23-byte body). Kernel work (system calls, TCP) is not counted; TLS crypto in user space is.
Weir's L4 row is its epoll relay (`WEIR_IO_URING=off`: under valgrind the io_uring relay, which
bench/RESULTS.md times, does not answer).
Unlike CPU time these counts do not move with the host's load; they do not weigh cache misses or
how long an instruction takes, so they show where user-space work differs, not CPU time.

{table}
""")


if __name__ == "__main__":
    main()
