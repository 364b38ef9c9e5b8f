#!/usr/bin/env python3
"""fakedns.py: a scripted DNS server for faults dnsmasq cannot make (SERVFAIL, REFUSED, slow
answers, dropped queries), on loopback only. Python standard library only.

Server (one process, UDP and TCP on the same port):

    python3 fakedns.py --listen 127.0.0.1:PORT --config FILE.json [--counts FILE] [--no-tcp]

FILE.json maps names (under .test) to behaviour:

    {"servfail.test": {"rcode": "SERVFAIL"},
     "slow.test":     {"delay_ms": 3000, "mx": [[10, "mx.slow.test"]]},
     "mx.slow.test":  {"a": ["127.0.0.2"], "aaaa": ["::1"], "ttl": 60},
     "refused.test":  {"rcode": "REFUSED"},
     "nx.test":       {"rcode": "NXDOMAIN"},
     "drop.test":     {"drop": true},
     "nullmx.test":   {"mx": [[0, "."]]}}

  rcode     NOERROR (default), FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, or a number:
            answered with no records (NXDOMAIN and NODATA carry an SOA)
  mx        [[preference, host], ...]; "a", "aaaa": address lists (loopback only)
  ttl       seconds, for the entry's records (default 300)
  negative_ttl  seconds, SOA TTL and MINIMUM in its NODATA answers (default --negative-ttl)
  delay_ms  wait this long before answering (other queries are not held up)
  drop      never answer
A configured name asked for a type it lacks gets NODATA (NOERROR, no answers, an SOA);
any other name gets NXDOMAIN. A UDP answer over 512 bytes is truncated (TC) so the client
retries over TCP. The server prints "ready" on stdout once bound, counts the queries per
name (and per "name/TYPE"), and writes them as JSON {"names": {...}, "types": {...}} to the
--counts file on SIGUSR1 and at exit (written to a temporary name, then renamed).
It refuses to bind to a non-loopback address and to serve names outside .test.

Library: FakeDns, a fixture in the style of harness.Dns that runs the server as a helper
process (own process group, stopped at close/exit, retried on a lost port race):

    with FakeDns({"servfail.test": {"rcode": "SERVFAIL"}}) as dns:
        conf = "DNS_Servers = (\"%s\")" % dns.server   # "127.0.0.1:PORT"
        ...
        assert dns.counts().get("servfail.test") == 1

dnsmasq can also forward a zone to it (server=/servfail.test/127.0.0.1#PORT) where harness.Dns
grows that option; until then impetus's DNS_Servers points at FakeDns directly.

Error contract: the server exits 2 with a message on stderr for a bad command line or config,
or when the port is in use ("address in use"); FakeDns raises ValueError for names outside
.test / addresses outside loopback, HarnessError when the server does not start.
"""

import argparse
import heapq
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

try:  # the FakeDns fixture needs the harness; the server itself does not
    import harness
except ImportError:  # pragma: no cover - server copied elsewhere
    harness = None

RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
         33: "SRV", 255: "ANY"}
T_A, T_SOA, T_MX, T_AAAA = 1, 6, 15, 28
UDP_MAX = 512          # bytes: answers above this are truncated over UDP
DEFAULT_TTL = 300      # seconds


class ConfigError(Exception):
    """The command line or the config file is unusable."""


def _loopback(addr):
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError("not an IP address: %r (loopback only)" % (addr,))
    if not ip.is_loopback:
        raise ConfigError("not a loopback address: %s (loopback only)" % addr)
    return ip


def _test_name(name):
    n = str(name).rstrip(".").lower()
    if not (n == "test" or n.endswith(".test")):
        raise ConfigError("not a .test name: %r" % (name,))
    return n


def parse_listen(text):
    """("127.0.0.1", port) from "127.0.0.1:PORT" or ("::1", port) from "[::1]:PORT"."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("bad --listen %r (want 127.0.0.1:PORT or [::1]:PORT)" % text)
    _loopback(host)
    return host, int(port)


def load_config(path, negative_ttl):
    """The validated zone: {name: entry} with normalized keys."""
    with open(path, "r", encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object of names")
    zone = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ConfigError("%s: entry must be an object" % name)
        unknown = set(entry) - {"rcode", "mx", "a", "aaaa", "ttl", "negative_ttl", "delay_ms", "drop"}
        if unknown:
            raise ConfigError("%s: unknown keys %s" % (name, ", ".join(sorted(unknown))))
        e = {"ttl": int(entry.get("ttl", DEFAULT_TTL)),
             "negative_ttl": int(entry.get("negative_ttl", negative_ttl)),
             "delay_ms": int(entry.get("delay_ms", 0)),
             "drop": bool(entry.get("drop", False))}
        rcode = entry.get("rcode", "NOERROR")
        if isinstance(rcode, str):
            if rcode.upper() not in RCODES:
                raise ConfigError("%s: unknown rcode %r" % (name, rcode))
            rcode = RCODES[rcode.upper()]
        e["rcode"] = int(rcode)
        e["mx"] = []
        for item in entry.get("mx", []):
            pref, host = item
            host = "." if host in (".", "") else _test_name(host)
            e["mx"].append((int(pref), host))
        e["a"] = [str(_loopback(a)) for a in entry.get("a", [])]
        e["aaaa"] = [str(_loopback(a)) for a in entry.get("aaaa", [])]
        for a in e["a"]:
            if ":" in a:
                raise ConfigError("%s: %s in \"a\" is not IPv4" % (name, a))
        for a in e["aaaa"]:
            if ":" not in a:
                raise ConfigError("%s: %s in \"aaaa\" is not IPv6" % (name, a))
        zone[_test_name(name)] = e
    return zone


# ---------------------------------------------------------------------------------------
# Packets.

def _encode_name(name):
    if name in (".", ""):
        return b"\0"
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _rr(name, rtype, ttl, rdata):
    return _encode_name(name) + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def parse_query(msg):
    """(qid, flags, qname, qtype, question_bytes) or None for a malformed query."""
    if len(msg) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", msg[:6])
    if flags & 0x8000 or qd != 1:
        return None
    off, labels = 12, []
    while True:
        if off >= len(msg):
            return None
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0 or off + n > len(msg):
            return None
        labels.append(msg[off:off + n].decode("ascii", "replace").lower())
        off += n
    if off + 4 > len(msg):
        return None
    qtype = struct.unpack(">H", msg[off:off + 2])[0]
    return qid, flags, ".".join(labels), qtype, msg[12:off + 4]


def _soa(owner, negative_ttl):
    rdata = (_encode_name("ns.test") + _encode_name("hostmaster.test") +
             struct.pack(">IIIII", 1, 3600, 600, 86400, negative_ttl))
    return _rr(owner, T_SOA, negative_ttl, rdata)


def build_answer(zone, query, negative_ttl):
    """(delay_s, answer bytes) for a parsed query, or None to drop it."""
    qid, flags, qname, qtype, question = query
    entry = zone.get(qname)
    if entry is not None and entry["drop"]:
        return None
    answers, authority, rcode = [], [], 0
    if entry is None:
        rcode = RCODES["NXDOMAIN"]
        authority.append(_soa("test", negative_ttl))
    elif entry["rcode"] != 0:
        rcode = entry["rcode"]
        if rcode == RCODES["NXDOMAIN"]:
            authority.append(_soa("test", entry["negative_ttl"]))
    else:
        ttl = entry["ttl"]
        if qtype in (T_MX, 255):
            for pref, host in entry["mx"]:
                answers.append(_rr(qname, T_MX, ttl, struct.pack(">H", pref) + _encode_name(host)))
        if qtype in (T_A, 255):
            for a in entry["a"]:
                answers.append(_rr(qname, T_A, ttl, socket.inet_pton(socket.AF_INET, a)))
        if qtype in (T_AAAA, 255):
            for a in entry["aaaa"]:
                answers.append(_rr(qname, T_AAAA, ttl, socket.inet_pton(socket.AF_INET6, a)))
        if not answers:
            authority.append(_soa("test", entry["negative_ttl"]))
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | (rcode & 0xF)  # QR AA RD RA
    header = struct.pack(">HHHHHH", qid, out_flags, 1, len(answers), len(authority), 0)
    delay = (entry["delay_ms"] / 1000.0) if entry is not None else 0.0
    return delay, header + question + b"".join(answers) + b"".join(authority)


def truncate(msg, question_len):
    """The header and question of msg with TC set and no records."""
    qid, flags = struct.unpack(">HH", msg[:4])
    return struct.pack(">HHHHHH", qid, flags | 0x0200, 1, 0, 0, 0) + msg[12:12 + question_len]


# ---------------------------------------------------------------------------------------
# The server.

class Server:
    """UDP (and TCP) on one loopback port; counts queries; dumps counts on SIGUSR1."""

    def __init__(self, host, port, zone, counts_path, negative_ttl, tcp=True):
        self.zone = zone
        self.counts_path = counts_path
        self.negative_ttl = negative_ttl
        self.names = {}
        self.types = {}
        self.lock = threading.Lock()
        self.dump_requested = False
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.udp.bind((host, port))
        self.tcp = None
        if tcp:
            self.tcp = socket.socket(family, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((host, port))
            self.tcp.listen(64)
        self.pending = []      # heap of (due monotonic s, seq, answer, client address)
        self.seq = 0

    def count(self, qname, qtype):
        with self.lock:
            self.names[qname] = self.names.get(qname, 0) + 1
            key = "%s/%s" % (qname, TYPES.get(qtype, str(qtype)))
            self.types[key] = self.types.get(key, 0) + 1

    def dump_counts(self):
        if not self.counts_path:
            return
        with self.lock:
            data = {"names": dict(self.names), "types": dict(self.types)}
        tmp = "%s.tmp.%d" % (self.counts_path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
        os.replace(tmp, self.counts_path)

    def answer(self, msg):
        """(delay_s, answer, question_len) for a datagram, or None."""
        query = parse_query(msg)
        if query is None:
            return None
        self.count(query[2], query[3])
        result = build_answer(self.zone, query, self.negative_ttl)
        if result is None:
            return None
        return result[0], result[1], len(query[4])

    def on_udp(self):
        try:
            msg, client = self.udp.recvfrom(65535)
        except OSError:
            return
        result = self.answer(msg)
        if result is None:
            return
        delay, reply, qlen = result
        if len(reply) > UDP_MAX:
            reply = truncate(reply, qlen)
        if delay > 0:
            self.seq += 1
            heapq.heappush(self.pending, (time.monotonic() + delay, self.seq, reply, client))
        else:
            self.udp.sendto(reply, client)

    def serve_tcp(self, conn):
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    head = self._recv_exact(conn, 2)
                    if head is None:
                        return
                    msg = self._recv_exact(conn, struct.unpack(">H", head)[0])
                    if msg is None:
                        return
                    result = self.answer(msg)
                    if result is None:
                        continue  # dropped: the client times out
                    delay, reply, _ = result
                    if delay > 0:
                        time.sleep(delay)
                    conn.sendall(struct.pack(">H", len(reply)) + reply)
            except OSError:
                return

    @staticmethod
    def _recv_exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def run(self):
        socks = [self.udp] + ([self.tcp] if self.tcp else [])
        while True:
            now = time.monotonic()
            while self.pending and self.pending[0][0] <= now:
                _, _, reply, client = heapq.heappop(self.pending)
                try:
                    self.udp.sendto(reply, client)
                except OSError:
                    pass
            timeout = 0.1
            if self.pending:
                timeout = max(0.0, min(timeout, self.pending[0][0] - now))
            readable, _, _ = select.select(socks, [], [], timeout)
            if self.dump_requested:
                self.dump_requested = False
                self.dump_counts()
            for s in readable:
                if s is self.udp:
                    self.on_udp()
                else:
                    try:
                        conn, _ = self.tcp.accept()
                    except OSError:
                        continue
                    threading.Thread(target=self.serve_tcp, args=(conn,), daemon=True).start()


def main(argv=None):
    p = argparse.ArgumentParser(description="scripted DNS server for impetus tests (loopback only)")
    p.add_argument("--listen", required=True, help="127.0.0.1:PORT or [::1]:PORT")
    p.add_argument("--config", required=True, help="JSON: name -> behaviour")
    p.add_argument("--counts", help="file for the query counts (SIGUSR1, exit)")
    p.add_argument("--negative-ttl", type=int, default=300,
                   help="seconds, SOA TTL/MINIMUM in NXDOMAIN answers for unknown names")
    p.add_argument("--no-tcp", action="store_true", help="UDP only")
    args = p.parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
        zone = load_config(args.config, args.negative_ttl)
    except (ConfigError, OSError, ValueError, TypeError) as e:
        sys.stderr.write("fakedns: %s\n" % e)
        return 2
    try:
        server = Server(host, port, zone, args.counts, args.negative_ttl, tcp=not args.no_tcp)
    except OSError as e:
        sys.stderr.write("fakedns: cannot bind %s: %s\n" % (args.listen, e))
        return 2

    def on_usr1(signum, frame):
        server.dump_requested = True

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    server.dump_counts()
    return 0


# ---------------------------------------------------------------------------------------
# The fixture.

if harness is not None:
    class FakeDns(harness._Fixture):
        """fakedns.py as a helper process on address:port (port=None: a free one).

            FakeDns({"servfail.test": {"rcode": "SERVFAIL"},
                     "slow.test": {"delay_ms": 3000, "mx": [[10, "mx.slow.test"]]},
                     "mx.slow.test": {"a": ["127.0.0.2"]}})

        zones: name -> behaviour, as in the server's config file (names under .test,
        addresses on loopback: ValueError otherwise). Attributes: address, port, server
        ("127.0.0.1:PORT", for DNS_Servers), config_path, counts_path.
        """

        SCRIPT = os.path.abspath(__file__)

        def __init__(self, zones, address="127.0.0.1", port=None, workdir=None, negative_ttl=300,
                     tcp=True):
            super().__init__(workdir, "impetus-fakedns-")
            self.address = harness.assert_loopback(address)
            self._fixed_port = port
            self.port = port
            self.negative_ttl = negative_ttl  # seconds
            self.tcp = tcp
            self.zones = {}
            for name, entry in zones.items():
                entry = dict(entry)
                for key in ("a", "aaaa"):
                    if key in entry:
                        entry[key] = [harness.assert_loopback(a) for a in entry[key]]
                if "mx" in entry:
                    entry["mx"] = [[int(p), h if h in (".", "") else harness.assert_test_name(h)]
                                   for p, h in entry["mx"]]
                self.zones[harness.assert_test_name(name)] = entry
            self.dir = harness._subdir(self.workdir, "fakedns")
            self.config_path = os.path.join(self.dir, "fakedns.json")
            self.counts_path = os.path.join(self.dir, "counts.json")
            self.stdout_path = os.path.join(self.dir, "fakedns.stdout")
            self.stderr_path = os.path.join(self.dir, "fakedns.stderr")

        @property
        def server(self):
            """The DNS_Servers entry for this server: "127.0.0.1:PORT" or "[::1]:PORT"."""
            return ("[%s]:%d" if ":" in self.address else "%s:%d") % (self.address, self.port)

        def start(self):
            with open(self.config_path, "w", encoding="utf-8") as f:
                json.dump(self.zones, f, indent=1, sort_keys=True)
            for _ in range(5):
                if self._fixed_port is None:
                    self.port = harness.free_port(self.address, udp=True)
                argv = [sys.executable, self.SCRIPT, "--listen", self.server,
                        "--config", self.config_path, "--counts", self.counts_path,
                        "--negative-ttl", str(self.negative_ttl)]
                if not self.tcp:
                    argv.append("--no-tcp")
                self.proc = harness._Proc(argv, "fakedns", cwd=self.dir,
                                          stdout_path=self.stdout_path,
                                          stderr_path=self.stderr_path)
                deadline = time.monotonic() + harness.START_TIMEOUT_S
                while time.monotonic() < deadline:
                    if "ready" in harness._read(self.stdout_path):
                        return self
                    if not self.proc.running():
                        break
                    time.sleep(0.02)
                self.proc.stop()
                diag = self.diagnostics()
                if self._fixed_port is None and "in use" in diag.lower():
                    continue  # lost the race for the port
                raise harness.HarnessError("fakedns did not start on %s\n%s" % (self.server, diag))
            raise harness.HarnessError("fakedns: no usable port after 5 attempts")

        def query(self, name, rtype="A", timeout=2.0):
            """Ask this server (harness.dns_query): a DnsReply."""
            return harness.dns_query(self.address, self.port, name, rtype, timeout=timeout)

        def _dump(self, timeout=5.0):
            if not self.running():
                return json.loads(harness._read(self.counts_path, "{}") or "{}")
            try:
                os.unlink(self.counts_path)
            except FileNotFoundError:
                pass
            self.proc.signal(signal.SIGUSR1)
            harness.wait_until(lambda: os.path.exists(self.counts_path), timeout,
                               what="fakedns query counts")
            return json.loads(harness._read(self.counts_path))

        def counts(self):
            """Queries received so far per name (lower case): {"mx.slow.test": 2, ...}."""
            return self._dump().get("names", {})

        def type_counts(self):
            """Queries received so far per "name/TYPE": {"slow.test/MX": 1, ...}."""
            return self._dump().get("types", {})

        def diagnostics(self):
            return "--- fakedns stderr:\n%s" % harness._tail(harness._read(self.stderr_path))


if __name__ == "__main__":
    sys.exit(main())
