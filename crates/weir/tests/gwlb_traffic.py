"""Traffic for the GWLB namespace tests (run with `ip netns exec NS python3 gwlb_traffic.py ...`).

  udp-echo ADDR PORT           echo UDP datagrams back to their sender, forever
  tcp-echo ADDR PORT           echo TCP bytes back, forever (a thread per connection)
  batch                        read flows from stdin, one per line:
                                 udp|tcp SRC SPORT DST DPORT COUNT
                               print, per flow, how many of COUNT messages came back
  stream SRC SPORT DST DPORT SECONDS
                               one UDP flow sending every 100 ms; prints "ok" or "lost" per message
  get URL                      print an HTTP GET's body
  http-ok ADDR PORT            answer every HTTP GET with 200 (a health check target)
"""
import socket
import sys
import threading
import time
import urllib.request


def udp_echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def tcp_echo(addr, port):
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, int(port)))
    l.listen(128)

    def serve(c):
        with c:
            while True:
                data = c.recv(65535)
                if not data:
                    return
                c.sendall(data)

    while True:
        c, _ = l.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def udp_flow(src, sport, dst, dport, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, sport))
    s.settimeout(1.0)
    ok = 0
    for i in range(count):
        msg = ("m%d" % i).encode()
        s.sendto(msg, (dst, dport))
        try:
            while True:
                data, _ = s.recvfrom(65535)
                if data == msg:
                    ok += 1
                    break
        except socket.timeout:
            pass
    s.close()
    return ok


def tcp_flow(src, sport, dst, dport, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, sport))
    s.settimeout(3.0)
    ok = 0
    try:
        s.connect((dst, dport))
        for i in range(count):
            msg = ("line %d\n" % i).encode()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(65535)
                if not chunk:
                    break
                got += chunk
            if got == msg:
                ok += 1
    except OSError:
        pass
    s.close()
    return ok


def batch():
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        kind, src, sport, dst, dport, count = parts
        flow = udp_flow if kind == "udp" else tcp_flow
        print(flow(src, int(sport), dst, int(dport), int(count)), flush=True)


def stream(src, sport, dst, dport, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, int(sport)))
    s.settimeout(0.1)
    end = time.time() + float(seconds)
    i = 0
    while time.time() < end:
        start = time.time()
        msg = ("s%d" % i).encode()
        i += 1
        s.sendto(msg, (dst, int(dport)))
        ok = False
        try:
            while not ok:
                data, _ = s.recvfrom(65535)
                ok = data == msg
        except socket.timeout:
            pass
        print("ok" if ok else "lost", flush=True)
        time.sleep(max(0.0, 0.1 - (time.time() - start)))


def http_ok(addr, port):
    import http.server

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer((addr, int(port)), Ok).serve_forever()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "udp-echo":
        udp_echo(*args)
    elif cmd == "tcp-echo":
        tcp_echo(*args)
    elif cmd == "batch":
        batch()
    elif cmd == "stream":
        stream(*args)
    elif cmd == "http-ok":
        http_ok(*args)
    elif cmd == "get":
        print(urllib.request.urlopen(args[0], timeout=3).read().decode(), end="")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
