"""test_conn_errors.py: every CONN_ERROR cause of SPEC §1, provoked for real.

The daemon delivers to real peers on loopback (dnsmasq, fakedns.py, smtp-sink) and, for the
causes that need a network that does not answer, inside a network namespace of its own. The
hook calls are observed through the in-tree conn_failure_log module loaded from its .so (with
`log_successes = true`, so log_client_connection_success calls are lines too):

    time@domain@binding@peer@flags        flags: CONN_ERROR_X|CONN_ACTION_Y, or SUCCESS

and what happened to the queued mail through the mainlog (D, T with the reply text, P), the
sinks' messages and the bounces that reach the sender's domain (snd.test).

  cause                     how                                            action checked
  MX_LOOKUP_PENDING         fakedns answers the MX after 1.5 s             none; then delivered
  MX_LOOKUP_FAILED          fakedns SERVFAIL, DNS_Failures_To_Purge = 2    none, then PURGE (554 5.4.4)
                            dnsmasq NXDOMAIN                               PURGE at once
  SMTP_NULL_MX              fakedns MX 0 .                                 PURGE (556 5.1.10)
  NO_MXS_REACHABLE          the only MX refused, retried within            REQUEUE1 (T); delivered once
                            Host_Failure_Retry                             the MX listens
  PROHIBITED_IP             MX at 127.0.0.9, Prohibited_Hosts              PURGE (551 5.4.6)
  HOST_MAX_REACHED          Host Max_Outbound_Connections = 1, 30 rcpts    none; one session carries all
  BIND                      Binding b1, Bind_Address 192.0.2.1 (absent)    REQUEUE1, binding b1
  CONNECT                   nothing listens on the MX                      REQUEUE1; none + next MX
  CONNECT_NETWORK           netns, no route to 192.0.2.1                   REQUEUE1
  CONNECT_TIMEOUT           netns, 192.0.2.77 routed into lo (SYNs vanish) REQUEUE1 after Connect_Timeout
  SOCKET                    prlimit lowers the daemon's RLIMIT_NOFILE      REQUEUE1; delivered after
  IOCTL                     an LD_PRELOAD shim fails fcntl(F_SETFL)        REQUEUE1; delivered after
  success                   log_client_connection_success once per session = smtp-sink's sessions

Every failure line must carry exactly one cause and at most one action; every daemon must stop
with exit 0 and no sanitizer report (run against an IMPETUS_SANITIZE build with
ASAN_OPTIONS=detect_leaks=1). One more test checks that the mainlog's T records count the
retries before the attempt, as docs/logs.md says (D records do).

Every scenario runs its own daemon and peers. Timers are small (Retry_Interval 1-2 s,
Host_Failure_Retry 2 s, Connect_Timeout 2 s) and everything is polled, never slept for.

Environment: IMPETUSD, IMPETUS_SOURCE_DIR, IMPETUS_MODULE_DIR (default: `modules` beside the
impetusd binary). The namespace scenarios need root, unshare(1) and ip(8), and are skipped
otherwise; the prlimit scenario needs prlimit(1), the IOCTL one a C compiler (cc).
"""

import os
import smtplib
import socket
import subprocess
import time
import unittest

import harness
import fakedns

IMPETUSD = harness.require_impetusd()
MODULE_DIR = os.environ.get("IMPETUS_MODULE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(IMPETUSD)), "modules")
if not os.path.isfile(os.path.join(MODULE_DIR, "conn_failure_log.so")):
    harness.skip_whole_test("no conn_failure_log.so in %s (build the modules, or set "
                            "IMPETUS_MODULE_DIR)" % MODULE_DIR)
harness.skip_unless("smtp-sink")
harness.skip_unless("dnsmasq")

SENDER = "sender@snd.test"
BOUNCE_ADDR = "127.0.0.3"       # snd.test's MX: the bounces arrive there
SINK_ADDR = "127.0.0.2"

CONF = """\
# impetus integration test: connection errors
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 1
Module_Search_Path = ( "{module_dir}" )
ec_logger {{
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/mainlog.ec"
  Heartbeat = 0
}}
conn_failure_log {{
  path = "var/log/connfail.log"
  log_successes = true
}}
DNS_Servers = ( "{dns}" )
DNS_Timeout = 2000
Remote_SMTP_Port = {port}
Retry_Interval = {retry}
Max_Retry_Interval = {retry}
Host_Failure_Retry = 2
Connect_Timeout = 2
Idle_Timeout = 1
{extra}
ESMTP_Listener {{
  Relay_Hosts = ( "127.0.0.1/32" )
  Listen "{listen}" {{ }}
}}
"""


# An LD_PRELOAD shim for CONN_ERROR_IOCTL: while the file named by $CONNERR_FAIL_SETFL exists,
# fcntl(F_SETFL, O_NONBLOCK) fails with EINVAL on TCP sockets that are neither bound nor
# connected (a fresh outbound socket; listeners are bound, accepted sockets connected).
FAIL_SETFL_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*fcntl_fn)(int, int, ...);

static int
should_fail(int fd, int cmd, long arg)
{
	const char *trigger = getenv("CONNERR_FAIL_SETFL");
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type;
	socklen_t tl = sizeof(type);

	if (cmd != F_SETFL || !(arg & O_NONBLOCK) || trigger == NULL || access(trigger, F_OK) != 0)
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
		return 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET) {
		if (((struct sockaddr_in *)&ss)->sin_port != 0)
			return 0;
	} else if (ss.ss_family == AF_INET6) {
		if (((struct sockaddr_in6 *)&ss)->sin6_port != 0)
			return 0;
	} else {
		return 0;
	}
	len = sizeof(ss);
	return getpeername(fd, (struct sockaddr *)&ss, &len) < 0 && errno == ENOTCONN;
}

static int
call(const char *name, int fd, int cmd, long arg)
{
	fcntl_fn real = (fcntl_fn)dlsym(RTLD_NEXT, name);
	int saved = errno;

	if (should_fail(fd, cmd, arg)) {
		errno = EINVAL;
		return -1;
	}
	errno = saved;
	return real(fd, cmd, arg);
}

int
fcntl(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	return call("fcntl", fd, cmd, arg);
}

int
fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	long arg;

	va_start(ap, cmd);
	arg = va_arg(ap, long);
	va_end(ap);
	return call("fcntl64", fd, cmd, arg);
}
"""


# ---------------------------------------------------------------------------------------
# Reading what the daemon wrote.

class Call:
    """One line of conn_failure_log: a hook call."""

    def __init__(self, line):
        self.line = line
        time_s, self.domain, self.binding, self.peer, flags = line.split("@", 4)
        self.time = int(time_s)
        self.flags = flags.split("|")
        self.causes = [f for f in self.flags if f.startswith("CONN_ERROR_")]
        self.actions = [f for f in self.flags if f.startswith("CONN_ACTION_")]
        self.success = flags == "SUCCESS"

    @property
    def cause(self):
        return self.causes[0] if len(self.causes) == 1 else None

    def __repr__(self):
        return "Call(%r)" % self.line

    def __eq__(self, other):
        return isinstance(other, Call) and other.line == self.line

    __hash__ = None


def calls(d, domain=None):
    """The hook calls logged so far (for one domain if given), in order."""
    text = harness._read(os.path.join(d.workdir, "var/log/connfail.log"))
    out = [Call(l) for l in text.splitlines() if l.strip()]
    return [c for c in out if domain is None or c.domain == domain]


class Rec:
    """One mainlog record: R, D, T, P (fields as in docs/logs.md)."""

    NFIELDS = {"R": 14, "D": 12, "T": 14, "P": 14}

    def __init__(self, line):
        self.line = line
        head = line.split("@", 5)
        self.type = head[4] if len(head) > 4 else ""
        n = self.NFIELDS.get(self.type)
        self.f = line.split("@", n - 1) if n else head
        self.msgid = self.f[1] if len(self.f) > 1 else ""
        if self.type in ("D", "T", "P"):
            self.domain = self.f[5]
            self.binding = self.f[8]
        elif self.type == "R":
            self.domain = self.f[6]
            self.binding = self.f[13]
        if self.type in ("T", "P"):
            self.ip = self.f[12]
            self.reply = self.f[13]
        elif self.type == "D":
            self.ip = self.f[11]

    def __repr__(self):
        return "Rec(%r)" % self.line

    def __eq__(self, other):
        return isinstance(other, Rec) and other.line == self.line

    __hash__ = None


def records(d, rtype=None, domain=None):
    text = harness._read(os.path.join(d.workdir, "var/log/mainlog.ec"))
    out = [Rec(l) for l in text.splitlines() if l.strip()]
    return [r for r in out if (rtype is None or r.type == rtype)
            and (domain is None or getattr(r, "domain", None) == domain)]


def diag(d, *peers):
    parts = [d.diagnostics(),
             "--- connfail.log:\n" + harness._read(os.path.join(d.workdir, "var/log/connfail.log")),
             "--- mainlog:\n" + harness._tail(harness._read(
                 os.path.join(d.workdir, "var/log/mainlog.ec")), 40)]
    for p in peers:
        parts.append(p.diagnostics())
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# Submitting mail.

class UnixSMTP(smtplib.SMTP):
    """smtplib over a Unix socket (the daemon's local submission Listen)."""

    def __init__(self, path, timeout=10):
        self._path = path
        super().__init__(timeout=timeout)
        self.connect("localhost")

    def _get_socket(self, host, port, timeout):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self._path)
        return s


def message(rcpts, subject, headers=()):
    lines = ["From: <%s>" % SENDER, "To: %s" % ", ".join("<%s>" % r for r in rcpts),
             "Subject: %s" % subject]
    lines += list(headers)
    return "\r\n".join(lines) + "\r\n\r\nconn_errors test body: %s\r\n" % subject


def submit(listen, rcpts, subject="test", headers=(), sender=SENDER):
    """Send one message (all rcpts in one transaction) to listen ("ip:port" or a path)."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    if listen.startswith("/"):
        client = UnixSMTP(listen)
    else:
        host, port = listen.rsplit(":", 1)
        client = smtplib.SMTP(host, int(port), timeout=10)
    with client as s:
        refused = s.sendmail(sender, rcpts, message(rcpts, subject, headers))
        assert not refused, refused


# ---------------------------------------------------------------------------------------
# The test case.

class ConnErrorsTest(unittest.TestCase):
    maxDiff = None

    def start_daemon(self, dns, port, extra="", retry=1, listen=None, binary=None, env=None):
        """A daemon with conn_failure_log; returns it with .listen (where to submit)."""
        tmp = harness.TempDir(prefix="impetus-connerr-")
        self.addCleanup(tmp.close)
        if listen is None:
            listen = "127.0.0.1:%d" % harness.free_port("127.0.0.1")
        conf = CONF.format(module_dir=MODULE_DIR, dns=dns, port=port, retry=retry,
                           extra=extra, listen=listen)
        d = harness.Daemon(conf, workdir=tmp.path, make_dirs=("var/log", "var/run"),
                           binary=binary, env=env)
        self.addCleanup(d.close)
        d.start()
        self.addCleanup(self.stop_clean, d)
        d.wait_log(r"module conn_failure_log: writing failed and successful connections")
        d.listen = listen if not listen.startswith("var/") else os.path.join(tmp.path, listen)
        self.daemons.append(d)
        return d

    def stop_clean(self, d):
        """Stop the daemon: exit 0, and no sanitizer report (leaks are reported at exit)."""
        if d.proc is None:
            return
        rc = d.stop()
        self.assertNotRegex(d.stderr(), r"(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:",
                            diag(d))
        self.assertEqual(rc, 0, diag(d))

    def setUp(self):
        self.daemons = []
        self.peers = []

    def tearDown(self):
        # A daemon that crashed (or an ASan report) fails the test that ran it.
        for d in self.daemons:
            if d.proc is not None and not d.running():
                self.fail("impetusd exited with %s during the test\n%s"
                          % (d.returncode, diag(d)))
            self.assertNotIn("ERROR: AddressSanitizer", d.stderr(), diag(d))

    def sink(self, address, port, **kw):
        s = harness.Sink(address, port=port, **kw)
        self.addCleanup(s.close)
        s.start()
        self.peers.append(s)
        return s

    def dnsmasq(self, mx, hosts):
        mx = dict(mx)
        mx.setdefault("snd.test", [(10, "mx.snd.test")])
        hosts = dict(hosts)
        hosts.setdefault("mx.snd.test", BOUNCE_ADDR)
        dns = harness.Dns(mx=mx, hosts=hosts)
        self.addCleanup(dns.close)
        dns.start()
        self.peers.append(dns)
        return dns

    def fakedns(self, zones):
        zones = dict(zones)
        zones.setdefault("snd.test", {"mx": [[10, "mx.snd.test"]]})
        zones.setdefault("mx.snd.test", {"a": [BOUNCE_ADDR]})
        dns = fakedns.FakeDns(zones)
        self.addCleanup(dns.close)
        dns.start()
        self.peers.append(dns)
        return dns

    @staticmethod
    def port_for(*addresses):
        """One TCP port free on every address (Remote_SMTP_Port is one number)."""
        for _ in range(50):
            port = harness.free_port(addresses[0])
            ok = True
            for a in addresses[1:]:
                with socket.socket() as s:
                    try:
                        s.bind((a, port))
                    except OSError:
                        ok = False
            if ok:
                return port
        raise harness.HarnessError("no port free on %s" % (addresses,))

    def wait_calls(self, d, pred, what, timeout=10.0, domain=None):
        try:
            return harness.wait_until(lambda: [c for c in calls(d, domain) if pred(c)],
                                      timeout, what=what)
        except harness.HarnessError as e:
            raise AssertionError("%s\n%s" % (e, diag(d, *self.peers)))

    def wait_records(self, d, rtype, domain, n, timeout=10.0, pred=lambda r: True):
        try:
            return harness.wait_until(
                lambda: (lambda rs: rs if len(rs) >= n else None)(
                    [r for r in records(d, rtype, domain) if pred(r)]),
                timeout, what="%d %s record(s) for %s" % (n, rtype, domain))
        except harness.HarnessError as e:
            raise AssertionError("%s\n%s" % (e, diag(d, *self.peers)))

    def assert_well_formed(self, d):
        """Every failure line has exactly one cause and at most one action."""
        for c in calls(d):
            if c.success:
                continue
            self.assertEqual(len(c.causes), 1, "%r: not exactly one cause" % c)
            self.assertLessEqual(len(c.actions), 1, "%r: more than one action" % c)
            self.assertEqual(len(c.causes) + len(c.actions), len(c.flags),
                             "%r: unknown bits" % c)

    def assert_bounces(self, bounce_sink, n, status, d):
        """n bounces to SENDER, from <>, each naming the status code."""
        try:
            msgs = bounce_sink.wait_for(n, timeout=10)
        except harness.HarnessError as e:
            raise AssertionError("%s\n%s" % (e, diag(d, *self.peers)))
        for m in msgs:
            self.assertEqual(m.rcpt_to, [SENDER], m)
            self.assertEqual(m.mail_from, "", m)
            self.assertIn(status, m.data, m.data)
        return msgs

    # ----------------------------------------------------------------- DNS causes

    def test_mx_lookup_pending_then_delivered(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.fakedns({"slow.test": {"delay_ms": 1500, "mx": [[10, "mx.slow.test"]]},
                            "mx.slow.test": {"a": [SINK_ADDR]}})
        sink = self.sink(SINK_ADDR, port)
        d = self.start_daemon(dns.server, port)
        submit(d.listen, "rcpt@slow.test", "slow dns")
        pending = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_MX_LOOKUP_PENDING",
                                  "MX_LOOKUP_PENDING", domain="slow.test")
        c = pending[0]
        self.assertEqual((c.binding, c.peer, c.flags),
                         ("default", "", ["CONN_ERROR_MX_LOOKUP_PENDING"]), c)
        dl = self.wait_records(d, "D", "slow.test", 1)
        self.assertEqual(dl[0].ip, SINK_ADDR, dl)
        msgs = sink.wait_for(1)
        self.assertEqual(msgs[0].rcpt_to, ["rcpt@slow.test"])
        log = calls(d, "slow.test")
        succ = [i for i, c in enumerate(log) if c.success]
        self.assertEqual(len(succ), 1, log)
        self.assertEqual(log[succ[0]].peer, "%s:%d" % (SINK_ADDR, port), log)
        # every pending report came before the connection, and nothing else failed
        for c in log[:succ[0]]:
            self.assertEqual(c.flags, ["CONN_ERROR_MX_LOOKUP_PENDING"], log)
        self.assertEqual([c for c in log[succ[0]:] if not c.success], [], log)
        self.assertEqual(records(d, "T", "slow.test"), [])
        self.assert_well_formed(d)

    def test_servfail_purged_after_dns_failures_to_purge(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.fakedns({"servfail.test": {"rcode": "SERVFAIL"}})
        bounces = self.sink(BOUNCE_ADDR, port)
        d = self.start_daemon(dns.server, port, "DNS_Failures_To_Purge = 2\n")
        submit(d.listen, ["a@servfail.test", "b@servfail.test"], "servfail")
        purge = self.wait_calls(
            d, lambda c: c.flags == ["CONN_ERROR_MX_LOOKUP_FAILED", "CONN_ACTION_PURGE_DOMAIN"],
            "MX_LOOKUP_FAILED|PURGE_DOMAIN", timeout=15, domain="servfail.test")
        log = calls(d, "servfail.test")
        first_purge = [i for i, c in enumerate(log) if "CONN_ACTION_PURGE_DOMAIN" in c.actions][0]
        before = log[:first_purge]
        # the first failure is counted, not acted on
        self.assertIn(["CONN_ERROR_MX_LOOKUP_FAILED"], [c.flags for c in before], log)
        for c in before:
            self.assertIn(c.flags, (["CONN_ERROR_MX_LOOKUP_PENDING"],
                                    ["CONN_ERROR_MX_LOOKUP_FAILED"]), log)
        for c in log:
            self.assertEqual((c.binding, c.peer), ("default", ""), c)
        self.assertFalse([c for c in log if c.success], log)
        ps = self.wait_records(d, "P", "servfail.test", 2)
        self.assertEqual(len(ps), 2, ps)
        for r in ps:
            self.assertTrue(r.reply.startswith("554 5.4.4"), r)
            self.assertEqual(r.ip, "", r)
        self.assertEqual(records(d, "D", "servfail.test"), [])
        self.assertGreaterEqual(dns.type_counts().get("servfail.test/MX", 0), 2)
        self.assert_bounces(bounces, 2, "5.4.4", d)
        self.assert_well_formed(d)

    def test_nxdomain_purged_at_once(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.dnsmasq({}, {})
        bounces = self.sink(BOUNCE_ADDR, port)
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port, "DNS_Failures_To_Purge = 5\n")
        submit(d.listen, "x@nx.test", "nxdomain")
        self.wait_calls(
            d, lambda c: c.flags == ["CONN_ERROR_MX_LOOKUP_FAILED", "CONN_ACTION_PURGE_DOMAIN"],
            "MX_LOOKUP_FAILED|PURGE_DOMAIN", domain="nx.test")
        log = calls(d, "nx.test")
        # no failure was counted first: NXDOMAIN is permanent
        self.assertNotIn(["CONN_ERROR_MX_LOOKUP_FAILED"], [c.flags for c in log], log)
        for c in log:
            self.assertEqual((c.binding, c.peer), ("default", ""), c)
        ps = self.wait_records(d, "P", "nx.test", 1)
        self.assertTrue(ps[0].reply.startswith("554 5.4.4"), ps)
        self.assertEqual(records(d, "T", "nx.test"), [])
        self.assert_bounces(bounces, 1, "5.4.4", d)
        self.assert_well_formed(d)

    def test_null_mx_purged(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.fakedns({"nullmx.test": {"mx": [[0, "."]]}})
        bounces = self.sink(BOUNCE_ADDR, port)
        d = self.start_daemon(dns.server, port)
        submit(d.listen, ["a@nullmx.test", "b@nullmx.test"], "null mx")
        self.wait_calls(
            d, lambda c: c.flags == ["CONN_ERROR_SMTP_NULL_MX", "CONN_ACTION_PURGE_DOMAIN"],
            "SMTP_NULL_MX|PURGE_DOMAIN", domain="nullmx.test")
        for c in calls(d, "nullmx.test"):
            self.assertEqual((c.binding, c.peer), ("default", ""), c)
            self.assertIn(c.cause, ("CONN_ERROR_MX_LOOKUP_PENDING", "CONN_ERROR_SMTP_NULL_MX"), c)
        ps = self.wait_records(d, "P", "nullmx.test", 2)
        for r in ps:
            self.assertTrue(r.reply.startswith("556 5.1.10"), r)
        self.assertEqual(records(d, "T", "nullmx.test"), [])
        self.assert_bounces(bounces, 2, "5.1.10", d)
        self.assert_well_formed(d)

    # ---------------------------------------------------------------- host causes

    def test_no_mxs_reachable_requeues_then_delivers(self):
        down = "127.0.0.6"
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR, down)
        dns = self.dnsmasq({"down.test": [(10, "mx.down.test")]}, {"mx.down.test": down})
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port)
        submit(d.listen, "x@down.test", "no mx reachable")
        peer = "%s:%d" % (down, port)
        refused = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_CONNECT",
                                  "CONN_ERROR_CONNECT", domain="down.test")
        self.assertEqual((refused[0].peer, refused[0].binding, refused[0].actions),
                         (peer, "default", ["CONN_ACTION_REQUEUE1"]), refused)
        # the retry (Retry_Interval 1 s) comes while the address is failed (2 s)
        nomx = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_NO_MXS_REACHABLE",
                               "CONN_ERROR_NO_MXS_REACHABLE", domain="down.test")
        self.assertEqual((nomx[0].peer, nomx[0].binding, nomx[0].flags),
                         ("", "default", ["CONN_ERROR_NO_MXS_REACHABLE", "CONN_ACTION_REQUEUE1"]),
                         nomx)
        ts = self.wait_records(d, "T", "down.test", 2)
        replies = [r.reply for r in ts]
        self.assertTrue(any("Connection refused" in r for r in replies), replies)
        self.assertTrue(any(r.startswith("451 4.4.1") and "No valid hosts" in r
                            for r in replies), replies)
        self.assertEqual(records(d, "P", "down.test"), [])
        # the MX comes up: the next retry after Host_Failure_Retry delivers
        sink = self.sink(down, port)
        self.wait_records(d, "D", "down.test", 1, timeout=15)
        self.assertEqual(sink.wait_for(1)[0].rcpt_to, ["x@down.test"])
        self.assertEqual([c.peer for c in calls(d, "down.test") if c.success], [peer])
        self.assert_well_formed(d)

    def test_prohibited_ip_purged(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.dnsmasq({"prohib.test": [(10, "mx.prohib.test")]},
                           {"mx.prohib.test": "127.0.0.9"})
        bounces = self.sink(BOUNCE_ADDR, port)
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port,
                              'Prohibited_Hosts = ( "127.0.0.9/32" )\n')
        submit(d.listen, "x@prohib.test", "prohibited")
        got = self.wait_calls(
            d, lambda c: c.flags == ["CONN_ERROR_PROHIBITED_IP", "CONN_ACTION_PURGE_DOMAIN"],
            "PROHIBITED_IP|PURGE_DOMAIN", domain="prohib.test")
        self.assertEqual((got[0].peer, got[0].binding), ("", "default"), got)
        self.assertFalse([c for c in calls(d, "prohib.test") if c.success])
        ps = self.wait_records(d, "P", "prohib.test", 1)
        self.assertTrue(ps[0].reply.startswith("551 5.4.6"), ps)
        self.assert_bounces(bounces, 1, "5.4.6", d)
        self.assert_well_formed(d)

    def test_host_max_reached_waits_for_the_slot(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.dnsmasq({"busy.test": [(10, "mx1.sink.test")]}, {"mx1.sink.test": SINK_ADDR})
        sink = self.sink(SINK_ADDR, port, data_delay=1)
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port,
                              'Max_Recipients_Per_Batch = 10\n'
                              'Host "mx1.sink.test" {\n  Max_Outbound_Connections = 1\n}\n')
        # 30 recipient-messages at once: the queue wants two sessions, the host allows one
        rcpts = ["r%02d@busy.test" % i for i in range(30)]
        submit(d.listen, rcpts, "host max")
        got = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_HOST_MAX_REACHED",
                              "HOST_MAX_REACHED", domain="busy.test")
        self.assertEqual((got[0].peer, got[0].binding, got[0].flags),
                         ("", "default", ["CONN_ERROR_HOST_MAX_REACHED"]), got)
        self.wait_records(d, "D", "busy.test", 30, timeout=20)
        self.assertEqual(records(d, "T", "busy.test"), [])
        self.assertEqual(records(d, "P", "busy.test"), [])
        got_rcpts = sorted(r for m in sink.wait_for(3) for r in m.rcpt_to)
        self.assertEqual(got_rcpts, rcpts)
        log = calls(d, "busy.test")
        self.assertEqual(len([c for c in log if c.success]), 1, log)
        for c in log:
            self.assertIn(c.cause if not c.success else "SUCCESS",
                          ("SUCCESS", "CONN_ERROR_HOST_MAX_REACHED",
                           "CONN_ERROR_MX_LOOKUP_PENDING"), log)
        harness.wait_until(lambda: sink.counters().get("sess", 0) >= 1, 10,
                           what="the sink's session to end")
        self.assertEqual(sink.counters()["sess"], 1, sink.counters())
        self.assert_well_formed(d)

    # -------------------------------------------------------------- socket causes

    def test_bind_failure_on_binding(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.dnsmasq({"bind.test": [(10, "mx.bind.test")]}, {"mx.bind.test": SINK_ADDR})
        sink = self.sink(SINK_ADDR, port)
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port,
                              'Binding "b1" {\n  Bind_Address = "192.0.2.1"\n}\n')
        submit(d.listen, "bound@bind.test", "bound to b1", headers=["X-Binding: b1"])
        peer = "%s:%d" % (SINK_ADDR, port)
        got = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_BIND", "CONN_ERROR_BIND",
                              domain="bind.test")
        self.assertEqual((got[0].binding, got[0].peer, got[0].flags),
                         ("b1", peer, ["CONN_ERROR_BIND", "CONN_ACTION_REQUEUE1"]), got)
        ts = self.wait_records(d, "T", "bind.test", 1)
        self.assertEqual(ts[0].binding, "b1", ts)
        self.assertIn("bind", ts[0].reply, ts)
        self.assertTrue(ts[0].reply.startswith("451 "), ts)
        # the default binding to the same domain is not affected
        submit(d.listen, "free@bind.test", "default binding")
        dl = self.wait_records(d, "D", "bind.test", 1)
        self.assertEqual(dl[0].binding, "default", dl)
        self.assertEqual(sink.wait_for(1)[0].rcpt_to, ["free@bind.test"])
        for c in calls(d, "bind.test"):
            if c.cause == "CONN_ERROR_MX_LOOKUP_PENDING":
                self.assertEqual(c.peer, "", c)
                continue
            self.assertEqual(c.binding, "default" if c.success else "b1", c)
            self.assertEqual(c.peer, peer, c)
        self.assertEqual(records(d, "D", "bind.test"), dl[:1])
        self.assert_well_formed(d)

    def test_connect_refused(self):
        dead = "127.0.0.7"
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR, dead)
        dns = self.dnsmasq({"refused.test": [(10, "mx.refused.test")],
                            "fallback.test": [(10, "mx.refused.test"), (20, "mx2.fallback.test")]},
                           {"mx.refused.test": dead, "mx2.fallback.test": SINK_ADDR})
        sink = self.sink(SINK_ADDR, port)
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port)
        submit(d.listen, "x@refused.test", "refused")
        peer = "%s:%d" % (dead, port)
        got = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_CONNECT", "CONN_ERROR_CONNECT",
                              domain="refused.test")
        self.assertEqual((got[0].binding, got[0].peer, got[0].flags),
                         ("default", peer, ["CONN_ERROR_CONNECT", "CONN_ACTION_REQUEUE1"]), got)
        ts = self.wait_records(d, "T", "refused.test", 1)
        self.assertTrue(ts[0].reply.startswith("451 4.4.1") and "refused" in ts[0].reply, ts)
        # with a second MX, the refused one is reported without action and the next is used
        submit(d.listen, "y@fallback.test", "fallback")
        self.wait_records(d, "D", "fallback.test", 1)
        self.assertEqual(sink.wait_for(1)[0].rcpt_to, ["y@fallback.test"])
        log = calls(d, "fallback.test")
        self.assertEqual([(c.flags, c.peer) for c in log if not c.success
                          and c.cause != "CONN_ERROR_MX_LOOKUP_PENDING"],
                         [(["CONN_ERROR_CONNECT"], peer)], log)
        self.assertEqual([c.peer for c in log if c.success], ["%s:%d" % (SINK_ADDR, port)], log)
        self.assertEqual(records(d, "T", "fallback.test"), [])
        self.assert_well_formed(d)

    def test_socket_failure_emfile(self):
        prlimit = harness.find_tool("prlimit")
        if prlimit is None:
            self.skipTest("prlimit(1) not found")
        target = "127.0.0.8"
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR, target)
        # a static route: no DNS socket comes and goes; Host_Failure_Retry 1 < Retry_Interval 2
        d = self.start_daemon("127.0.0.1:9", port,
                              'Domain "emfile.test" {\n  Routes = ( "smtp://%s:%d" )\n'
                              '  Host_Failure_Retry = 1\n}\n' % (target, port), retry=2)
        pid = d.pidfile_pid()
        submit(d.listen, "x@emfile.test", "emfile")
        self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_CONNECT", "first refusal",
                        domain="emfile.test")
        soft, hard = self.nofile(pid)
        self.addCleanup(self.set_nofile, prlimit, pid, soft, hard)
        try:
            # every descriptor below the limit is in use: the next socket() gets EMFILE. A
            # descriptor closed meanwhile lets one attempt through (refused): lower again.
            deadline = time.monotonic() + 20
            while True:
                fds = set(int(x) for x in os.listdir("/proc/%d/fd" % pid))
                lowest = min(set(range(len(fds) + 1)) - fds)
                self.set_nofile(prlimit, pid, lowest, hard)
                n = len(calls(d, "emfile.test"))
                got = harness.wait_until(lambda: calls(d, "emfile.test")[n:], 10,
                                         what="the next attempt")
                if any(c.cause == "CONN_ERROR_SOCKET" for c in got):
                    break
                if time.monotonic() > deadline:
                    self.fail("no CONN_ERROR_SOCKET\n" + diag(d))
        finally:
            self.set_nofile(prlimit, pid, soft, hard)
        sock = [c for c in calls(d, "emfile.test") if c.cause == "CONN_ERROR_SOCKET"]
        self.assertEqual((sock[0].binding, sock[0].peer, sock[0].flags),
                         ("default", "%s:%d" % (target, port),
                          ["CONN_ERROR_SOCKET", "CONN_ACTION_REQUEUE1"]), sock)
        ts = self.wait_records(d, "T", "emfile.test", 1,
                               pred=lambda r: "cannot create a socket" in r.reply)
        self.assertTrue(ts[0].reply.startswith("451 4.3.0"), ts)
        # the limit back, the MX up: the message goes out
        sink = self.sink(target, port)
        self.wait_records(d, "D", "emfile.test", 1, timeout=15)
        self.assertEqual(sink.wait_for(1)[0].rcpt_to, ["x@emfile.test"])
        self.assert_well_formed(d)

    def test_ioctl_failure(self):
        cc = harness.find_tool("cc") or harness.find_tool("gcc") or harness.find_tool("clang")
        if cc is None:
            self.skipTest("no C compiler for the fcntl shim")
        tmp = harness.TempDir(prefix="impetus-ioctl-")
        self.addCleanup(tmp.close)
        src, so = tmp.join("failsetfl.c"), tmp.join("failsetfl.so")
        with open(src, "w") as f:
            f.write(FAIL_SETFL_SHIM)
        r = subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", so, src, "-ldl"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        trigger = tmp.join("fail-setfl")
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        sink = self.sink(SINK_ADDR, port)
        env = {"LD_PRELOAD": so, "CONNERR_FAIL_SETFL": trigger}
        d = self.start_daemon("127.0.0.1:9", port,
                              'Domain "ioctl.test" {\n  Routes = ( "smtp://%s:%d" )\n}\n'
                              % (SINK_ADDR, port), env=env)
        open(trigger, "w").close()
        submit(d.listen, "x@ioctl.test", "ioctl")
        peer = "%s:%d" % (SINK_ADDR, port)
        got = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_IOCTL", "CONN_ERROR_IOCTL",
                              domain="ioctl.test")
        os.unlink(trigger)
        self.assertEqual((got[0].binding, got[0].peer, got[0].flags),
                         ("default", peer, ["CONN_ERROR_IOCTL", "CONN_ACTION_REQUEUE1"]), got)
        ts = self.wait_records(d, "T", "ioctl.test", 1)
        self.assertTrue(ts[0].reply.startswith("451 4.3.0") and "set up a socket" in ts[0].reply,
                        ts)
        # the shim off: the retry goes out
        self.wait_records(d, "D", "ioctl.test", 1, timeout=10)
        self.assertEqual(sink.wait_for(1)[0].rcpt_to, ["x@ioctl.test"])
        self.assertEqual([c.peer for c in calls(d, "ioctl.test") if c.success], [peer])
        self.assert_well_formed(d)

    def test_transient_records_count_retries_before_the_attempt(self):
        """docs/logs.md: T/P field 10 and D field 9 are the retries *before* this attempt."""
        dead = "127.0.0.10"
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR, dead)
        d = self.start_daemon("127.0.0.1:9", port,
                              'Domain "retries.test" {\n  Routes = ( "smtp://%s:%d" )\n}\n'
                              % (dead, port))
        submit(d.listen, "x@retries.test", "retries")
        ts = self.wait_records(d, "T", "retries.test", 2)
        # first attempt refused, the second finds the address failed (Host_Failure_Retry)
        self.assertIn("Connection refused", ts[0].reply, ts)
        self.assertIn("No valid hosts", ts[1].reply, ts)
        self.assertEqual([r.f[10] for r in ts[:2]], ["0", "1"],
                         "T records must count the retries before the attempt: %r" % ts)

    @staticmethod
    def nofile(pid):
        with open("/proc/%d/limits" % pid) as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return int(soft), int(hard)
        raise AssertionError("no Max open files in /proc/%d/limits" % pid)

    @staticmethod
    def set_nofile(prlimit, pid, soft, hard):
        if not harness.pid_alive(pid):
            return
        subprocess.run([prlimit, "--pid", str(pid), "--nofile=%d:%d" % (soft, hard)],
                       check=True, capture_output=True, timeout=10)

    # --------------------------------------------------------- network namespace

    def test_network_unreachable_and_timeout_in_netns(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to create a network namespace")
        unshare, ip = harness.find_tool("unshare"), harness.find_tool("ip")
        if unshare is None or ip is None:
            self.skipTest("needs unshare(1) and ip(8)")
        probe = subprocess.run([unshare, "--net", ip, "link", "set", "lo", "up"],
                               capture_output=True, text=True, timeout=10)
        if probe.returncode != 0:
            self.skipTest("cannot create a network namespace: %s" % probe.stderr.strip())
        tmp = harness.TempDir(prefix="impetus-netns-")
        self.addCleanup(tmp.close)
        # impetusd in a namespace of its own: only lo up; 192.0.2.77 routed into lo, where
        # nothing owns it (SYNs vanish: timeout); no route at all to 192.0.2.1 (ENETUNREACH).
        wrapper = tmp.join("impetusd-netns")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec %s --net /bin/sh -c \'%s link set lo up && '
                    '%s route add 192.0.2.77/32 dev lo && exec "$0" "$@"\' %s "$@"\n'
                    % (unshare, ip, ip, harness.impetusd_path()))
        os.chmod(wrapper, 0o755)
        extra = ('Domain "unreach.test" {\n  Routes = ( "smtp://192.0.2.1:25" )\n}\n'
                 'Domain "timeout.test" {\n  Routes = ( "smtp://192.0.2.77:25" )\n}\n')
        d = self.start_daemon("127.0.0.1:53", 25, extra, listen="var/run/submit.sock",
                              binary=wrapper)
        self.assertNotEqual(os.readlink("/proc/%d/ns/net" % d.pidfile_pid()),
                            os.readlink("/proc/self/ns/net"), "impetusd is not in a netns")
        submit(d.listen, "u@unreach.test", "unreachable")
        submit(d.listen, "t@timeout.test", "timeout")
        got = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_CONNECT_NETWORK",
                              "CONN_ERROR_CONNECT_NETWORK", domain="unreach.test")
        self.assertEqual((got[0].binding, got[0].peer, got[0].flags),
                         ("default", "192.0.2.1:25",
                          ["CONN_ERROR_CONNECT_NETWORK", "CONN_ACTION_REQUEUE1"]), got)
        got = self.wait_calls(d, lambda c: c.cause == "CONN_ERROR_CONNECT_TIMEOUT",
                              "CONN_ERROR_CONNECT_TIMEOUT", domain="timeout.test")
        self.assertEqual((got[0].binding, got[0].peer, got[0].flags),
                         ("default", "192.0.2.77:25",
                          ["CONN_ERROR_CONNECT_TIMEOUT", "CONN_ACTION_REQUEUE1"]), got)
        tu = self.wait_records(d, "T", "unreach.test", 1)
        self.assertTrue(tu[0].reply.startswith("451 4.4.1") and "unreachable" in tu[0].reply, tu)
        tt = self.wait_records(d, "T", "timeout.test", 1)
        self.assertTrue(tt[0].reply.startswith("450 4.4.1") and "Timed Out" in tt[0].reply, tt)
        # the timeout took Connect_Timeout (2 s), not less
        r = records(d, "R", "timeout.test")[0]
        self.assertGreaterEqual(int(tt[0].f[0]) - int(r.f[0]), 1, (r, tt))
        for dom in ("unreach.test", "timeout.test"):
            self.assertFalse([c for c in calls(d, dom) if c.success], calls(d, dom))
            self.assertEqual(records(d, "P", dom), [])
        self.assert_well_formed(d)

    # ------------------------------------------------------------------ successes

    def test_success_once_per_session(self):
        port = self.port_for(SINK_ADDR, BOUNCE_ADDR)
        dns = self.dnsmasq({"ok.test": [(10, "mx.ok.test")]}, {"mx.ok.test": SINK_ADDR})
        sink = self.sink(SINK_ADDR, port)
        d = self.start_daemon("127.0.0.1:%d" % dns.port, port,
                              "Max_Deliveries_Per_Connection = 2\n")
        for i in range(5):
            submit(d.listen, "r%d@ok.test" % i, "success %d" % i)
        self.wait_records(d, "D", "ok.test", 5)
        sink.wait_for(5)
        succ = lambda: [c for c in calls(d, "ok.test") if c.success]
        # each session ends (QUIT after 2 deliveries or Idle_Timeout 1 s): compare counts
        try:
            harness.wait_until(lambda: sink.counters().get("sess", 0) == len(succ())
                               and sink.counters().get("quit", 0) == len(succ()), 10,
                               what="sink sessions == success calls")
        except harness.HarnessError:
            self.fail("sink counters %s, success calls %r\n%s"
                      % (sink.counters(), succ(), diag(d, sink)))
        self.assertGreaterEqual(len(succ()), 3, succ())   # at most 2 deliveries per session
        for c in succ():
            self.assertEqual((c.binding, c.peer, c.flags),
                             ("default", "%s:%d" % (SINK_ADDR, port), ["SUCCESS"]), c)
        self.assertEqual([c for c in calls(d, "ok.test") if not c.success
                          and c.cause != "CONN_ERROR_MX_LOOKUP_PENDING"], [])
        self.assertEqual(records(d, "T", "ok.test"), [])
        self.assert_well_formed(d)


if __name__ == "__main__":
    harness.main()
