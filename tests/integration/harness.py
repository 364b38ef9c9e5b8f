"""harness.py: the real peers and the real daemon for impetus's black-box tests.

Every tests/integration/test_*.py imports this module. It runs, on loopback only:
  Dns     dnsmasq in the foreground, authoritative for `.test` (records from Python data),
          plus query(), a minimal stdlib DNS client (A, AAAA, MX, CNAME, TXT, ...).
  Sink    Postfix's smtp-sink on 127.0.0.x:port, dumping every message to a directory,
          optionally failing chosen SMTP commands; messages() / wait_for(n).
  Daemon  $IMPETUSD -c FILE in the foreground, its own process group, cwd = a temp dir;
          reload() / reopen_logs() / stop(), paniclog() / wait_log().
  check() / run_impetusd()  one-shot runs of the daemon binary (--check, --version ...).
  free_port(), TempDir, skip_unless(tool), require_impetusd(), main().

Ownership and cleanup: every process started here is in its own process group and is
registered; it is stopped (SIGTERM to the group, SIGKILL after GRACE_S) when its fixture
closes, at interpreter exit (atexit), on SIGTERM/SIGHUP (turned into KeyboardInterrupt so
`with` blocks unwind), and, if this interpreter is killed outright, by a small watchdog
process that holds a pipe to us and kills the registered groups (and removes the
registered temp dirs) when the pipe closes. Temporary directories are removed at the end
unless KEEP_TEST_DIRS is set.

Error contract: a fixture that cannot start raises HarnessError (an AssertionError, so the
test reports FAIL with the peer's own diagnostics). Names outside `.test` and addresses
outside loopback raise ValueError before anything is started.

Only the Python standard library is used.
"""

import atexit
import email
import ipaddress
import os
import pwd
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
KEEP_TEST_DIRS = bool(os.environ.get("KEEP_TEST_DIRS"))
SOURCE_DIR = os.environ.get("IMPETUS_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRACE_S = 5.0          # seconds between SIGTERM and SIGKILL when stopping a helper
START_TIMEOUT_S = 15.0  # seconds a peer or the daemon may take to become ready
_SIGTERM = signal.SIGTERM  # (class bodies below define a method named signal)
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class HarnessError(AssertionError):
    """A peer or the daemon did not do what the harness needed (reported as a test FAIL)."""


# ---------------------------------------------------------------------------------------
# Guards: loopback addresses and .test names only.

def assert_loopback(addr):
    """Return addr if it is a loopback IP address (127.0.0.0/8 or ::1); raise ValueError."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError("not an IP address: %r (tests use loopback addresses only)" % (addr,))
    if not ip.is_loopback:
        raise ValueError("not a loopback address: %s (tests use loopback addresses only)" % addr)
    return str(ip)


def assert_test_name(name):
    """Return name (lower case, no trailing dot) if it is under `.test`; raise ValueError."""
    n = name.rstrip(".").lower()
    if not (n == "test" or n.endswith(".test")):
        raise ValueError("not a .test name: %r (tests use .test domains only)" % (name,))
    return n


# ---------------------------------------------------------------------------------------
# Environment: tools, CI, skipping.

def find_tool(tool):
    """Path of an executable (PATH, then the sbin directories), or None."""
    if os.sep in tool:
        return tool if os.access(tool, os.X_OK) else None
    path = shutil.which(tool)
    if path:
        return path
    for d in SBIN_DIRS:
        p = os.path.join(d, tool)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def skip_whole_test(reason):
    """Skip the whole test file (print SKIP, exit 0); under CI=true this is a failure."""
    name = os.path.basename(sys.argv[0] or "test")
    if CI:
        sys.stderr.write("FAIL: %s: %s (CI=true: a missing prerequisite is a failure)\n"
                         % (name, reason))
        sys.stderr.flush()
        sys.exit(1)
    sys.stdout.write("SKIP: %s: %s\n" % (name, reason))
    sys.stdout.flush()
    sys.exit(0)


def skip_unless(tool):
    """Return the tool's path; if it is missing, skip the whole test (fail when CI=true)."""
    path = find_tool(tool)
    if path is None:
        skip_whole_test("required tool %r not found in PATH or %s" % (tool, ":".join(SBIN_DIRS)))
    return path


def impetusd_path():
    """The daemon under test: $IMPETUSD, else <source>/build/impetusd."""
    return os.environ.get("IMPETUSD") or os.path.join(SOURCE_DIR, "build", "impetusd")


def require_impetusd():
    """Return the daemon's path; if it is not built, skip the whole test (fail when CI=true)."""
    path = impetusd_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        skip_whole_test("impetusd not found at %s (set IMPETUSD or build it)" % path)
    return path


def main():
    """unittest.main(verbosity=2): the exit status reflects failures."""
    unittest.main(verbosity=2)


# ---------------------------------------------------------------------------------------
# Temporary directories.

_TEMP_DIRS = []


class TempDir:
    """A temporary directory, removed by close() (or at exit) unless KEEP_TEST_DIRS is set.

    When running as root it is made traversable (0711) so that peers which drop to
    `nobody` (smtp-sink) can reach the sub-directories they are given.
    """

    def __init__(self, prefix="impetus-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        if os.geteuid() == 0:
            os.chmod(self.path, 0o711)
        self._closed = False
        _TEMP_DIRS.append(self)
        if not KEEP_TEST_DIRS:
            _watchdog_send("D" + self.path)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def close(self):
        if self._closed:
            return
        self._closed = True
        if KEEP_TEST_DIRS:
            sys.stderr.write("KEEP_TEST_DIRS: kept %s\n" % self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)
            _watchdog_send("R" + self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _subdir(parent, name, mode=0o711):
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    return path


# ---------------------------------------------------------------------------------------
# Ports and polling.

def free_port(address="127.0.0.1", udp=False):
    """A port that is free on address for TCP (and for UDP too when udp=True).

    The port is only known free at the time of the call: fixtures that get it retry with
    another port when the peer then fails with "address in use".
    """
    assert_loopback(address)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as t:
            t.bind((address, 0))
            port = t.getsockname()[1]
            if not udp:
                return port
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as u:
                    u.bind((address, port))
                return port
            except OSError:
                continue
    raise HarnessError("no free port found on %s" % address)


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns a true value (returned); HarnessError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def smtp_ready(address):
    """True once an SMTP server answers at address ((host, port) or a Unix socket path).

    The probe is a whole, polite session (banner, QUIT, the server's close), so by the time
    this returns True the server has already released the session: tests of session limits
    are not disturbed by the probe itself."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(address)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            if not data.startswith(b"220"):
                return False
            s.sendall(b"QUIT\r\n")
            while s.recv(4096):        # the 221, then the server's close
                pass
        return True
    except OSError:
        return False


def _read(path, default=""):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return default


def _tail(text, lines=30):
    return "\n".join(text.splitlines()[-lines:])


def _listening(address, port):
    """True if a TCP socket listens on address:port (from /proc/net/tcp*, else by connecting)."""
    ip = ipaddress.ip_address(address)
    table = "/proc/net/tcp6" if ip.version == 6 else "/proc/net/tcp"
    if ip.version == 4:
        want = "%08X:%04X" % (struct.unpack("<I", ip.packed)[0], port)
    else:
        words = struct.unpack("<4I", ip.packed)
        want = "".join("%08X" % w for w in words) + ":%04X" % port
    try:
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == want and fields[3] == "0A":
                    return True
        return False
    except OSError:
        try:
            with socket.create_connection((address, port), timeout=1):
                return True
        except OSError:
            return False


# ---------------------------------------------------------------------------------------
# Processes: own process group, registered for cleanup, watched by a watchdog.

_LIVE = set()          # _Proc objects whose process group may still exist
_WATCHDOG = None       # subprocess.Popen of the watchdog, started with the first helper

_WATCHDOG_SRC = r"""
import os, signal, sys, time
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
import shutil
groups, dirs = set(), set()
for line in sys.stdin:
    line = line.rstrip("\n")
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
    elif line[:1] == "D":
        dirs.add(line[1:])
    elif line[:1] == "R":
        dirs.discard(line[1:])
def alive(g):
    try:
        os.killpg(g, 0)
        return True
    except OSError:
        return False
for g in list(groups):
    try:
        os.killpg(g, signal.SIGTERM)
    except OSError:
        pass
deadline = time.monotonic() + %(grace)f
while any(alive(g) for g in groups) and time.monotonic() < deadline:
    time.sleep(0.1)
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
time.sleep(0.1 if groups else 0)
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


def _watchdog_send(line):
    global _WATCHDOG
    try:
        if _WATCHDOG is None:
            _WATCHDOG = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG_SRC % {"grace": GRACE_S}],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        _WATCHDOG.stdin.write((line + "\n").encode())
        _WATCHDOG.stdin.flush()
    except (OSError, ValueError):
        pass  # the watchdog is a safety net; atexit and the fixtures still clean up


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def pid_alive(pid):
    """True if a process with this pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _Proc:
    """One helper process, leader of its own process group, with output to files."""

    def __init__(self, argv, name, cwd=None, env=None, stdout_path=None, stderr_path=None):
        self.name = name
        self.argv = list(argv)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=err, start_new_session=True,
                                          close_fds=True)
        finally:
            for f in (out, err):
                if f is not subprocess.DEVNULL:
                    f.close()
        self.pid = self.popen.pid
        self.pgid = self.pid  # start_new_session: the child leads its own group
        _LIVE.add(self)
        _watchdog_send("+%d" % self.pgid)

    @property
    def returncode(self):
        return self.popen.poll()

    def running(self):
        return self.popen.poll() is None

    def signal(self, sig):
        """Send sig to the process itself (not its group)."""
        if self.running():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=_SIGTERM, grace=GRACE_S):
        """Stop the whole group: sig, then SIGKILL after grace. Returns the leader's exit code."""
        if self.running():
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass
            if self.wait(grace) is None:
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        self._reap_group()
        return self.popen.returncode

    def _reap_group(self):
        """After the leader exited: kill anything it left in its group, then forget it."""
        self.popen.poll()
        if _group_alive(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + GRACE_S
            while _group_alive(self.pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self in _LIVE:
            _LIVE.discard(self)
            _watchdog_send("-%d" % self.pgid)


def _cleanup_all():
    for p in list(_LIVE):
        try:
            p.stop()
        except Exception:  # keep cleaning the others
            pass
    for d in list(_TEMP_DIRS):
        d.close()
    global _WATCHDOG
    if _WATCHDOG is not None:
        try:
            _WATCHDOG.stdin.close()
            _WATCHDOG.wait(timeout=GRACE_S + 5)
        except Exception:
            pass
        _WATCHDOG = None


def _interrupt(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


atexit.register(_cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_sig, _interrupt)
    except (ValueError, OSError):  # not the main thread
        pass


def _user_for_peers():
    """The user peers drop to when we are root: nobody if it exists, else root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("nobody")
        return "nobody"
    except KeyError:
        return "root"


class _Fixture:
    """Common parts: a work directory (own temp dir unless given), context management."""

    def __init__(self, workdir, prefix):
        self._own_dir = None
        if workdir is None:
            self._own_dir = TempDir(prefix=prefix)
            workdir = self._own_dir.path
        self.workdir = os.path.abspath(workdir)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.running()

    def close(self):
        """Stop the process (group) and remove the fixture's own temp dir."""
        if self.proc is not None:
            self.proc.stop()
        if self._own_dir is not None:
            self._own_dir.close()

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------
# DNS: dnsmasq, and a minimal client.

RTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
          "AAAA": 28, "SRV": 33, "ANY": 255}
RTYPE_NAMES = {v: k for k, v in RTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class DnsError(Exception):
    """No usable answer (timeout, malformed reply)."""


class DnsRecord:
    """One resource record: name, rtype ("A", "MX", ... or a number), ttl (seconds), value.

    value: A/AAAA an address string; MX a (preference, host) tuple; CNAME/NS/PTR a name;
    TXT a list of str; SOA a tuple (mname, rname, serial, refresh, retry, expire, minimum);
    anything else the raw rdata bytes.
    """

    def __init__(self, name, rtype, ttl, value):
        self.name = name
        self.rtype = rtype
        self.ttl = ttl  # seconds
        self.value = value

    def __repr__(self):
        return "DnsRecord(%r, %r, %r, %r)" % (self.name, self.rtype, self.ttl, self.value)


class DnsReply:
    """A parsed DNS response: rcode (int), rcode_name, aa, tc, answers/authority/additional."""

    def __init__(self, rcode, aa, tc, answers, authority, additional):
        self.rcode = rcode
        self.rcode_name = RCODES.get(rcode, str(rcode))
        self.aa = aa
        self.tc = tc
        self.answers = answers
        self.authority = authority
        self.additional = additional

    def values(self, rtype=None):
        """Values of the answer records (of one type if given), in answer order."""
        return [r.value for r in self.answers if rtype is None or r.rtype == rtype]

    def __repr__(self):
        return "DnsReply(%s, answers=%r)" % (self.rcode_name, self.answers)


def _dns_encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad DNS label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def dns_build_query(qid, name, rtype):
    """A standard query with recursion desired, one question, class IN."""
    qtype = RTYPES[rtype.upper()] if isinstance(rtype, str) else int(rtype)
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return header + _dns_encode_name(name) + struct.pack(">HH", qtype, 1)


def _dns_decode_name(msg, off):
    """(name, offset after the name in place), following compression pointers."""
    labels = []
    end = None
    hops = 0
    while True:
        if off >= len(msg):
            raise DnsError("truncated name")
        length = msg[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DnsError("truncated compression pointer")
            if end is None:
                end = off + 2
            hops += 1
            if hops > 64:
                raise DnsError("compression pointer loop")
            off = ((length & 0x3F) << 8) | msg[off + 1]
            continue
        if length & 0xC0:
            raise DnsError("unsupported label type 0x%02x" % length)
        off += 1
        if length == 0:
            break
        if off + length > len(msg):
            raise DnsError("truncated label")
        labels.append(msg[off:off + length].decode("ascii", "replace"))
        off += length
    return ".".join(labels), (end if end is not None else off)


def _dns_rdata(msg, off, rdlen, rtype):
    rdata = msg[off:off + rdlen]
    if len(rdata) != rdlen:
        raise DnsError("truncated rdata")
    if rtype == 1 and rdlen == 4:
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rtype == 28 and rdlen == 16:
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rtype == 15:
        return (struct.unpack(">H", rdata[:2])[0], _dns_decode_name(msg, off + 2)[0])
    if rtype in (2, 5, 12):
        return _dns_decode_name(msg, off)[0]
    if rtype == 16:
        strings, i = [], 0
        while i < rdlen:
            n = rdata[i]
            strings.append(rdata[i + 1:i + 1 + n].decode("utf-8", "replace"))
            i += 1 + n
        return strings
    if rtype == 6:
        mname, o = _dns_decode_name(msg, off)
        rname, o = _dns_decode_name(msg, o)
        return (mname, rname) + struct.unpack(">IIIII", msg[o:o + 20])
    return rdata


def dns_parse_reply(msg, qid=None):
    """Parse a DNS response into a DnsReply; DnsError if malformed or not the answer to qid."""
    if len(msg) < 12:
        raise DnsError("short reply (%d bytes)" % len(msg))
    rid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    if qid is not None and rid != qid:
        raise DnsError("reply id %d, want %d" % (rid, qid))
    if not flags & 0x8000:
        raise DnsError("not a response")
    off = 12
    for _ in range(qd):
        _, off = _dns_decode_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            name, off = _dns_decode_name(msg, off)
            if off + 10 > len(msg):
                raise DnsError("truncated record header")
            rtype, _rclass, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            value = _dns_rdata(msg, off, rdlen, rtype)
            off += rdlen
            records.append(DnsRecord(name, RTYPE_NAMES.get(rtype, rtype), ttl, value))
        sections.append(records)
    return DnsReply(flags & 0xF, bool(flags & 0x0400), bool(flags & 0x0200), *sections)


def dns_query(server, port, name, rtype="A", timeout=2.0, tries=3):
    """Ask server:port (loopback only) about name (under .test only) over UDP, TCP if truncated."""
    assert_loopback(server)
    assert_test_name(name)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    last = None
    for _ in range(tries):
        qid = random.randrange(1, 65536)
        query = dns_build_query(qid, name, rtype)
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((server, port))
            try:
                s.send(query)
                deadline = time.monotonic() + timeout
                while True:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    data = s.recv(65535)
                    try:
                        reply = dns_parse_reply(data, qid)
                        break
                    except DnsError as e:  # a stray or malformed datagram: keep listening
                        last = e
            except (socket.timeout, ConnectionRefusedError) as e:
                last = e
                continue
        if reply.tc:
            return _dns_query_tcp(family, server, port, name, rtype, timeout)
        return reply
    raise DnsError("no answer from %s:%d for %s %s: %s" % (server, port, name, rtype, last))


def _dns_query_tcp(family, server, port, name, rtype, timeout):
    qid = random.randrange(1, 65536)
    query = dns_build_query(qid, name, rtype)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((server, port))
        s.sendall(struct.pack(">H", len(query)) + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = s.recv(65535)
            if not chunk:
                raise DnsError("TCP connection closed early")
            data += chunk
    return dns_parse_reply(data[2:2 + struct.unpack(">H", data[:2])[0]], qid)


class Dns(_Fixture):
    """dnsmasq authoritative for `.test`, configured from Python data.

        Dns(mx={"d1.test": [(10, "mx1.sink.test")], "d2.test": "mx2.sink.test"},
            hosts={"mx1.sink.test": "127.0.0.2", "v6.sink.test": ["::1", "127.0.0.3"]})

    mx: domain -> list of (preference, host), or a bare host (preference 10).
    hosts: name -> address or list of addresses (A and AAAA records; loopback only).
    Names not configured under .test get NXDOMAIN; nothing is ever forwarded.
    port=None picks a free port (5353 is mDNS and collides under `ctest -j`); give
    port=5353 to use that one. Attributes: address, port, pidfile, logfile, conf_path.
    """

    def __init__(self, mx=None, hosts=None, address="127.0.0.1", port=None, workdir=None,
                 ttl=300):
        super().__init__(workdir, "impetus-dns-")
        self.address = assert_loopback(address)
        self._fixed_port = port
        self.port = port
        self.ttl = ttl  # seconds, for the configured records
        self.mx = {}
        for domain, targets in (mx or {}).items():
            if isinstance(targets, str):
                targets = [(10, targets)]
            self.mx[assert_test_name(domain)] = [(int(p), assert_test_name(h)) for p, h in targets]
        self.hosts = {}
        for name, addrs in (hosts or {}).items():
            if isinstance(addrs, str):
                addrs = [addrs]
            self.hosts[assert_test_name(name)] = [assert_loopback(a) for a in addrs]
        self.dir = _subdir(self.workdir, "dns")
        self.conf_path = os.path.join(self.dir, "dnsmasq.conf")
        self.pidfile = os.path.join(self.dir, "dnsmasq.pid")
        self.logfile = os.path.join(self.dir, "dnsmasq.log")

    def _conf_text(self):
        lines = ["# generated by impetus tests/integration/harness.py",
                 "port=%d" % self.port,
                 "listen-address=%s" % self.address,
                 "bind-interfaces",
                 "no-resolv", "no-hosts", "no-poll", "no-negcache",
                 "local=/test/",
                 "local-ttl=%d" % self.ttl,
                 "pid-file=%s" % self.pidfile,
                 "log-queries"]
        user = _user_for_peers()
        if user:
            lines.append("user=%s" % user)
        for name, addrs in sorted(self.hosts.items()):
            lines.append("host-record=%s,%s" % (name, ",".join(addrs)))
        for domain, targets in sorted(self.mx.items()):
            for pref, host in targets:
                lines.append("mx-host=%s,%s,%d" % (domain, host, pref))
        return "\n".join(lines) + "\n"

    def start(self):
        binary = find_tool("dnsmasq")
        if binary is None:
            raise HarnessError("dnsmasq not found")
        for attempt in range(5):
            if self._fixed_port is None:
                self.port = free_port(self.address, udp=True)
            with open(self.conf_path, "w") as f:
                f.write(self._conf_text())
            for p in (self.pidfile, self.logfile):
                if os.path.exists(p):
                    os.unlink(p)
            self.proc = _Proc([binary, "-k", "--conf-file=%s" % self.conf_path,
                               "--no-resolv", "--no-hosts", "--no-poll",
                               "--log-facility=%s" % self.logfile],
                              "dnsmasq", cwd=self.dir,
                              stdout_path=os.path.join(self.dir, "dnsmasq.stdout"),
                              stderr_path=os.path.join(self.dir, "dnsmasq.stderr"))
            if self._wait_ready():
                return self
            self.proc.stop()
            diag = self.diagnostics()
            if self._fixed_port is None and "in use" in diag.lower():
                continue  # lost the race for the port: try another
            raise HarnessError("dnsmasq did not start on %s:%s\n%s"
                               % (self.address, self.port, diag))
        raise HarnessError("dnsmasq: no usable port after 5 attempts")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.proc.running():
                return False
            try:
                dns_query(self.address, self.port, "ready-probe.test", "A", timeout=0.2, tries=1)
                return True
            except (DnsError, OSError):
                time.sleep(0.05)
        return False

    def query(self, name, rtype="A", timeout=2.0):
        """Ask this server; returns a DnsReply (see dns_query)."""
        return dns_query(self.address, self.port, name, rtype, timeout=timeout)

    def diagnostics(self):
        return "--- dnsmasq stderr:\n%s\n--- dnsmasq log:\n%s" % (
            _tail(_read(os.path.join(self.dir, "dnsmasq.stderr"))), _tail(_read(self.logfile)))


# ---------------------------------------------------------------------------------------
# SMTP sink: Postfix's smtp-sink.

class SinkMessage:
    """One message captured by smtp-sink.

    client_addr, proto, helo: from smtp-sink's X- headers; mail_from (address without <>),
    mail_args (the raw MAIL arguments); rcpt_to (addresses), rcpt_args (raw RCPT arguments);
    data: the message as received (headers and body, "\\n" line ends, dot-unstuffed);
    message: data parsed by the email package; subject; body; path: the dump file.
    """

    _ADDR = re.compile(r"<([^>]*)>")

    def __init__(self, path, text):
        self.path = path
        self.client_addr = self.proto = self.helo = self.mail_args = None
        self.rcpt_args = []
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            key, _, value = line.partition(": ")
            if key == "X-Client-Addr":
                self.client_addr = value
            elif key == "X-Client-Proto":
                self.proto = value
            elif key == "X-Helo-Args":
                self.helo = value
            elif key == "X-Mail-Args":
                self.mail_args = value
            elif key == "X-Rcpt-Args":
                self.rcpt_args.append(value)
            elif key == "Received":
                i += 1
                while i < len(lines) and lines[i][:1] in (" ", "\t"):
                    i += 1
                break
            else:
                break
            i += 1
        data = "\n".join(lines[i:])
        if data.endswith("\n\n"):  # smtp-sink appends one empty line to each message
            data = data[:-1]
        self.data = data
        self.mail_from = self._address(self.mail_args)
        self.rcpt_to = [self._address(a) for a in self.rcpt_args]
        self.message = email.message_from_string(data)

    @classmethod
    def _address(cls, args):
        if args is None:
            return None
        m = cls._ADDR.search(args)
        return m.group(1) if m else args.split()[0]

    @property
    def subject(self):
        return self.message.get("Subject")

    @property
    def body(self):
        payload = self.message.get_payload()
        return payload if isinstance(payload, str) else str(payload)

    def __repr__(self):
        return "SinkMessage(from=%r, to=%r, subject=%r)" % (self.mail_from, self.rcpt_to,
                                                            self.subject)


class Sink(_Fixture):
    """smtp-sink on address:port, recording each message to a file in dump_dir.

        Sink("127.0.0.2", hard_fail=["RCPT"], hard_reply="550 5.1.1 no such user")

    hard_fail / soft_fail: commands answered 5xx / 4xx (-f / -r; CONNECT, HELO, EHLO, MAIL,
    RCPT, DATA, ".", RSET, NOOP, QUIT ...), with hard_reply / soft_reply as text (-B / -b);
    disconnect: commands after which the connection is dropped without reply (-q);
    reply_421: commands answered 421 and disconnected (-Q); data_delay: seconds before
    answering DATA (-w); hostname: greeting name (-h); extra_args: any other options.
    port=None picks a free port. 127.0.0.2 .. 127.0.0.5 need no setup on Linux.
    """

    def __init__(self, address="127.0.0.2", port=None, *, hard_fail=(), soft_fail=(),
                 disconnect=(), reply_421=(), hard_reply=None, soft_reply=None,
                 data_delay=None, hostname="sink.test", extra_args=(), workdir=None):
        super().__init__(workdir, "impetus-sink-")
        self.address = assert_loopback(address)
        self._fixed_port = port
        self.port = port
        self.options = []
        for flag, cmds in (("-f", hard_fail), ("-r", soft_fail), ("-q", disconnect),
                           ("-Q", reply_421)):
            if isinstance(cmds, str):
                cmds = [cmds]
            if cmds:
                self.options += [flag, ",".join(cmds)]
        if hard_reply:
            self.options += ["-B", hard_reply]
        if soft_reply:
            self.options += ["-b", soft_reply]
        if data_delay is not None:
            self.options += ["-w", str(data_delay)]
        self.options += ["-h", hostname] + list(extra_args)
        self.dir = _subdir(self.workdir, "sink-%s" % self.address.replace(":", "_"))
        self.dump_dir = _subdir(self.dir, "messages", 0o777)
        self.stdout_path = os.path.join(self.dir, "smtp-sink.out")
        self.stderr_path = os.path.join(self.dir, "smtp-sink.err")

    @property
    def server(self):
        """(host, port) for smtplib.SMTP(*sink.server)."""
        return (self.address, self.port)

    def start(self):
        binary = find_tool("smtp-sink")
        if binary is None:
            raise HarnessError("smtp-sink not found")
        v6 = ":" in self.address
        for attempt in range(5):
            if self._fixed_port is None:
                self.port = free_port(self.address)
            argv = [binary, "-6" if v6 else "-4", "-c",
                    "-d", os.path.join(self.dump_dir, "%Y%m%d%H%M%S.")]
            user = _user_for_peers()
            if user:
                argv += ["-u", user]
            listen = ("[%s]:%d" if v6 else "%s:%d") % (self.address, self.port)
            argv += self.options + [listen, "64"]
            self.proc = _Proc(argv, "smtp-sink", cwd=self.dir, stdout_path=self.stdout_path,
                              stderr_path=self.stderr_path)
            deadline = time.monotonic() + START_TIMEOUT_S
            while self.proc.running() and time.monotonic() < deadline:
                if _listening(self.address, self.port):
                    return self
                time.sleep(0.05)
            self.proc.stop()
            diag = self.diagnostics()
            if self._fixed_port is None and "in use" in diag.lower():
                continue
            raise HarnessError("smtp-sink did not start on %s\n%s" % (listen, diag))
        raise HarnessError("smtp-sink: no usable port after 5 attempts")

    def counters(self):
        """smtp-sink's running counters {"sess": n, "quit": n, "mesg": n} (-c output)."""
        text = _read(self.stdout_path).replace("\r", "\n")
        for line in reversed(text.splitlines()):
            found = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", line))
            if "mesg" in found:
                return found
        return {"sess": 0, "quit": 0, "mesg": 0}

    def messages(self):
        """Messages received so far (completed transactions), oldest first.

        smtp-sink opens a dump file at MAIL and writes it at end of DATA; empty files are
        transactions in progress or aborted ones, and are left out.
        """
        entries = []
        for name in os.listdir(self.dump_dir):
            path = os.path.join(self.dump_dir, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if st.st_size == 0:
                continue
            entries.append((st.st_mtime_ns, name, path))
        entries.sort()
        out = []
        for _, _, path in entries:
            text = _read(path)
            if "\nReceived: " in text and text.endswith("\n"):
                out.append(SinkMessage(path, text))
        return out

    def wait_for(self, n, timeout=10.0):
        """Wait until at least n messages were received; return messages()."""
        def enough():
            if self.counters()["mesg"] < n:
                return None
            msgs = self.messages()
            return msgs if len(msgs) >= n else None
        try:
            return wait_until(enough, timeout, what="%d message(s) at the sink" % n)
        except HarnessError:
            raise HarnessError("sink %s:%d: wanted %d message(s), counters %s, messages %r\n%s"
                               % (self.address, self.port, n, self.counters(), self.messages(),
                                  self.diagnostics()))

    def diagnostics(self):
        return "--- smtp-sink stderr:\n%s" % _tail(_read(self.stderr_path))


# ---------------------------------------------------------------------------------------
# The daemon.

class ImpetusResult(tuple):
    """(rc, stdout, stderr) of a one-shot impetusd run; also .conf_path and .workdir."""

    def __new__(cls, rc, out, err, conf_path=None, workdir=None):
        self = super().__new__(cls, (rc, out, err))
        self.rc, self.stdout, self.stderr = rc, out, err
        self.conf_path = conf_path
        self.workdir = workdir
        return self


def run_impetusd(args, workdir=None, timeout=30.0, env=None, binary=None):
    """Run impetusd with args in workdir (a temp dir if None); ImpetusResult.

    A run still going after timeout seconds is killed and reported as HarnessError.
    """
    own = None
    if workdir is None:
        own = TempDir(prefix="impetus-run-")
        workdir = own.path
    try:
        tag = "run-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        out_path = os.path.join(workdir, tag + ".stdout")
        err_path = os.path.join(workdir, tag + ".stderr")
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = _Proc([binary or impetusd_path()] + list(args), "impetusd", cwd=workdir,
                     env=full_env, stdout_path=out_path, stderr_path=err_path)
        rc = proc.wait(timeout)
        if rc is None:
            proc.stop(grace=2)
            raise HarnessError("impetusd %s still running after %.0fs\nstderr:\n%s"
                               % (" ".join(args), timeout, _tail(_read(err_path))))
        proc.stop()
        return ImpetusResult(rc, _read(out_path), _read(err_path), workdir=workdir)
    finally:
        if own is not None:
            own.close()


def check(conf_text, workdir=None, conf_name="impetusd.conf", timeout=30.0):
    """Write conf_text to workdir/conf_name and run `impetusd -c FILE --check`.

    Returns (rc, stdout, stderr), with .conf_path (the absolute FILE given to -c).
    """
    own = None
    if workdir is None:
        own = TempDir(prefix="impetus-check-")
        workdir = own.path
    try:
        conf_path = os.path.join(os.path.abspath(workdir), conf_name)
        with open(conf_path, "w") as f:
            f.write(conf_text)
        r = run_impetusd(["-c", conf_path, "--check"], workdir=workdir, timeout=timeout)
        return ImpetusResult(r.rc, r.stdout, r.stderr, conf_path=conf_path,
                             workdir=os.path.abspath(workdir))
    finally:
        if own is not None:
            own.close()


class Daemon(_Fixture):
    """impetusd -c FILE in the foreground, its own process group, cwd = workdir.

        with Daemon(conf_text) as d:
            d.wait_log(r"started"); d.reload(); rc = d.stop()

    pidfile / paniclog: the paths the configuration names (relative to workdir); start()
    waits until the pidfile exists (start(wait=False) does not). make_dirs (none by
    default: the daemon creates what its configuration names) are created in workdir
    first. stdout/stderr go to <name>.stdout / <name>.stderr in workdir.
    """

    def __init__(self, conf_text, *, pidfile="var/run/impetusd.pid",
                 paniclog="var/log/paniclog.ec", workdir=None, conf_name="impetusd.conf",
                 args=(), env=None, make_dirs=(),
                 binary=None, start_timeout=START_TIMEOUT_S):
        super().__init__(workdir, "impetus-daemon-")
        self.binary = binary or impetusd_path()
        self.conf_path = os.path.join(self.workdir, conf_name)
        self.name = os.path.splitext(conf_name)[0]
        self.pidfile = os.path.join(self.workdir, pidfile)
        self.paniclog_path = os.path.join(self.workdir, paniclog)
        self.stdout_path = os.path.join(self.workdir, self.name + ".stdout")
        self.stderr_path = os.path.join(self.workdir, self.name + ".stderr")
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.start_timeout = start_timeout
        for d in make_dirs:
            os.makedirs(os.path.join(self.workdir, d), exist_ok=True)
        self.write_conf(conf_text)

    def write_conf(self, conf_text):
        """(Re)write the configuration file (then reload() to apply it)."""
        with open(self.conf_path, "w") as f:
            f.write(conf_text)

    def start(self, wait=True):
        self.proc = _Proc([self.binary, "-c", self.conf_path] + self.args, "impetusd",
                          cwd=self.workdir, env=self.env, stdout_path=self.stdout_path,
                          stderr_path=self.stderr_path)
        if wait:
            self.wait_started()
        return self

    def wait_started(self, timeout=None):
        """Wait until the pidfile exists and is not empty; HarnessError if the daemon exits."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _read(self.pidfile).strip():
                return self
            if not self.proc.running():
                raise HarnessError("impetusd exited with %s before writing %s\n%s"
                                   % (self.proc.returncode, self.pidfile, self.diagnostics()))
            time.sleep(0.05)
        raise HarnessError("impetusd: no pidfile %s after %.0fs\n%s"
                           % (self.pidfile, timeout, self.diagnostics()))

    def pidfile_pid(self):
        """The pid written in the pidfile, or None."""
        m = re.match(r"\s*(\d+)", _read(self.pidfile))
        return int(m.group(1)) if m else None

    @property
    def returncode(self):
        return self.proc.returncode if self.proc else None

    def signal(self, sig):
        self.proc.signal(sig)

    def reload(self):
        """SIGHUP: reread the configuration file."""
        self.signal(signal.SIGHUP)

    def reopen_logs(self):
        """SIGUSR1: reopen the log files."""
        self.signal(signal.SIGUSR1)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit code. HarnessError (after SIGKILL) if it hangs."""
        if not self.proc.running():
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        if rc is None:
            diag = self.diagnostics()
            self.proc.stop(signal.SIGKILL, grace=2)
            raise HarnessError("impetusd did not stop within %.0fs of SIGTERM\n%s"
                               % (timeout, diag))
        self.proc.stop()  # reap anything left in its group
        return rc

    def wait(self, timeout=15.0):
        """Wait for the daemon to exit by itself; exit code, or HarnessError on timeout."""
        rc = self.proc.wait(timeout)
        if rc is None:
            raise HarnessError("impetusd still running after %.0fs\n%s"
                               % (timeout, self.diagnostics()))
        self.proc.stop()
        return rc

    def stdout(self):
        return _read(self.stdout_path)

    def stderr(self):
        return _read(self.stderr_path)

    def paniclog(self):
        """The text of the paniclog at its configured path ("" if absent)."""
        return _read(self.paniclog_path)

    def wait_log(self, regex, timeout=10.0, since=0):
        """Poll the paniclog (from character offset since) until regex matches; the Match."""
        pattern = re.compile(regex, re.M)
        try:
            return wait_until(lambda: pattern.search(self.paniclog()[since:]), timeout,
                              what="paniclog line matching %r" % regex)
        except HarnessError:
            raise HarnessError("no paniclog line matching %r within %.0fs\n%s"
                               % (regex, timeout, self.diagnostics()))

    def diagnostics(self):
        rc = self.proc.returncode if self.proc else None
        return ("--- impetusd %s (exit %s)\n--- stdout:\n%s\n--- stderr:\n%s\n--- paniclog:\n%s"
                % (self.conf_path, rc, _tail(self.stdout()), _tail(self.stderr()),
                   _tail(self.paniclog())))
