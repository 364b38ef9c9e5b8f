"""test_queue_dns.py: queues, DNS and outbound delivery of the real daemon, end to end.

Mail is injected with smtplib into the daemon's ESMTP listener (the peer is in Relay_Hosts,
127.0.0.0/8), resolved through a real dnsmasq (harness.Dns) or, for the faults dnsmasq cannot
make (null MX, SERVFAIL), through fakedns.FakeDns, and delivered to real smtp-sinks on
127.0.0.2 .. 127.0.0.5. All the sinks of one test listen on one port, the daemon's
Remote_SMTP_Port; each test runs its own daemon (own spool) and its own sinks on a fresh port.

Outcomes are observed at the sinks (what arrived where, smtp-sink's session counters) and in
the mainlog (docs/logs.md): the R record maps a recipient to its message id, then the D / T / P
records of that id give the binding, the retry count, the address that accepted the message
and the failure reply.

Covered: MX delivery, implicit MX, preference order (the worse MX unused while the better is
up, used when the better refuses connections), spreading over equal preferences, null MX,
NXDOMAIN, SERVFAIL with DNS_Failures_To_Purge, Gateway (address, name, name:port; also after
a reload) and Routes (port parameter, host:port, preferences, a name), bindings from X-Binding / X-Binding-Group headers (the header
is removed), Default_Binding none / suspended, retries after a 4xx RCPT (also across a
daemon restart on the same spool), Message_Expiration with an RFC 3464 bounce,
Max_Retries = 0, and Suspend_Delivery in a Domain stanza.
"""

import os
import smtplib
import socket
import threading
import unittest

import harness
import fakedns

IMPETUSD = harness.require_impetusd()
harness.skip_unless("dnsmasq")
harness.skip_unless("smtp-sink")

SINK_ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")

# dnsmasq's zone: one set of domains per scenario, so no test sees another's state.
HOSTS = {
    "h2.hosts.test": "127.0.0.2",
    "h3.hosts.test": "127.0.0.3",
    "h4.hosts.test": "127.0.0.4",
    "h5.hosts.test": "127.0.0.5",
    "implicit.test": "127.0.0.3",        # no MX: the A record is the implicit MX
    "mx.name.test": "127.0.0.4",         # a Gateway given by name (A only)
}
MX = {
    "mx.test": [(10, "h2.hosts.test")],
    "pref.test": [(10, "h2.hosts.test"), (20, "h3.hosts.test")],
    "prefdown.test": [(10, "h4.hosts.test"), (20, "h3.hosts.test")],
    "spread.test": [(10, "h2.hosts.test"), (10, "h3.hosts.test"),
                    (10, "h4.hosts.test"), (10, "h5.hosts.test")],
    "sender.test": [(10, "h5.hosts.test")],     # senders' domain: bounces arrive at .5
    # Gateway / Routes override the domain's own MX (which points at .2)
    "gw.test": [(10, "h2.hosts.test")],
    "gwname.test": [(10, "h2.hosts.test")],
    "rt.test": [(10, "h2.hosts.test")],
    "rt2.test": [(10, "h2.hosts.test")],
    "rtpref.test": [(10, "h2.hosts.test")],
    "rtname.test": [(10, "h2.hosts.test")],
    "gwport.test": [(10, "h2.hosts.test")],
    "bind.test": [(10, "h2.hosts.test")],
    "retry.test": [(10, "h2.hosts.test")],
    "restart.test": [(10, "h2.hosts.test")],
    "exp.test": [(10, "h2.hosts.test")],
    "maxr.test": [(10, "h2.hosts.test")],
    "held.test": [(10, "h2.hosts.test")],
    "free.test": [(10, "h3.hosts.test")],
}

DNS = None


def setUpModule():
    global DNS
    DNS = harness.Dns(mx=MX, hosts=HOSTS, ttl=300)
    DNS.start()


def tearDownModule():
    if DNS is not None:
        DNS.close()


# ---------------------------------------------------------------------------------------
# Configuration, injection, the mainlog.

def config(listen_port, sink_port, dns_server, extra=""):
    return """\
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
Relay_Hosts = ( "127.0.0.0/8" )
DNS_Servers = ( "%(dns)s" )
DNS_Timeout = 500
Remote_SMTP_Port = %(sink_port)d
Host_Failure_Retry = 1
Idle_Timeout = 2
ec_logger {
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/mainlog.ec"
  Heartbeat = 0
}
ESMTP_Listener {
  Banner_Hostname = "mx.impetus.test"
  Listen "127.0.0.1:%(listen)d" { }
}
%(extra)s
""" % {"dns": dns_server, "sink_port": sink_port, "listen": listen_port, "extra": extra}


def sink_port():
    """A port free on every sink address (the sinks of one test share it)."""
    for _ in range(50):
        port = harness.free_port(SINK_ADDRS[0])
        ok = True
        for addr in SINK_ADDRS[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((addr, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise harness.HarnessError("no port free on all of %s" % (SINK_ADDRS,))


_SEQ = [0]


def make_message(sender, rcpts, subject, headers=()):
    _SEQ[0] += 1
    lines = ["From: <%s>" % sender if sender else "From: <mailer-daemon@sender.test>",
             "To: %s" % ", ".join("<%s>" % r for r in rcpts),
             "Subject: %s" % subject,
             "Message-ID: <qdns-%d-%d@sender.test>" % (os.getpid(), _SEQ[0])]
    lines += list(headers)
    return "\r\n".join(lines) + "\r\n\r\nbody of %s\r\n" % subject


def send(port, sender, rcpts, subject, headers=()):
    """One message through the daemon's listener; smtplib's exceptions propagate."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.sendmail(sender, rcpts, make_message(sender, rcpts, subject, headers))


RECORD_FIELDS = {"R": 14, "D": 12, "T": 14, "P": 14}


def parse_mainlog(text):
    """The R/D/T/P records of a mainlog text: lists of fields (the last one may hold '@')."""
    out = []
    for line in text.splitlines():
        head = line.split("@", 5)
        if len(head) < 5 or head[4] not in RECORD_FIELDS:
            continue
        fields = line.split("@", RECORD_FIELDS[head[4]] - 1)
        if len(fields) == RECORD_FIELDS[head[4]]:
            out.append(fields)
    return out


class DaemonTest(unittest.TestCase):
    """One daemon per test; sinks on one fresh port; the module's dnsmasq (or another DNS)."""

    dns_server = None   # "127.0.0.1:PORT"; None: the module's dnsmasq

    def setUp(self):
        self.port = sink_port()
        self.sinks = {}
        self.d = None

    def start_sink(self, addr, **kw):
        s = harness.Sink(addr, port=self.port, **kw)
        s.start()
        self.addCleanup(s.close)
        self.sinks[addr] = s
        return s

    def replace_sink(self, addr, **kw):
        """Stop the sink on addr and start another (options kw) on the same address and port."""
        self.sinks[addr].close()
        return self.start_sink(addr, **kw)

    def start_daemon(self, extra="", workdir=None):
        dns = self.dns_server or "%s:%d" % (DNS.address, DNS.port)
        self.listen = harness.free_port()
        d = harness.Daemon(config(self.listen, self.port, dns, extra), workdir=workdir)
        self.addCleanup(d.close)
        d.start()
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.listen)), 10,
                           what="the daemon's listener")
        self.d = d
        return d

    def send(self, rcpts, subject, sender="alice@sender.test", headers=()):
        send(self.listen, sender, rcpts, subject, headers)

    # The mainlog.
    def mainlog_text(self, d=None):
        d = d or self.d
        return harness._read(os.path.join(d.workdir, "var/log/mainlog.ec"))

    def records(self, d=None):
        return parse_mainlog(self.mainlog_text(d))

    def msgid(self, rcpt, d=None):
        """The message id of the recipient (its R record)."""
        local, _, domain = rcpt.rpartition("@")

        def find():
            for f in self.records(d):
                if f[4] == "R" and f[5] == local and f[6] == domain:
                    return f[1]
            return None
        return harness.wait_until(find, 10, what="R record of %s" % rcpt)

    def of(self, msgid, kind, d=None):
        return [f for f in self.records(d) if f[1] == msgid and f[4] == kind]

    def wait_record(self, msgid, kind, timeout=15, d=None):
        """The first record of this type for msgid (polled)."""
        try:
            return harness.wait_until(lambda: (self.of(msgid, kind, d) or [None])[0], timeout,
                                      what="%s record of %s" % (kind, msgid))
        except harness.HarnessError:
            raise AssertionError("no %s record for %s within %ss\n--- mainlog:\n%s\n%s"
                                 % (kind, msgid, timeout, self.mainlog_text(d)[-4000:],
                                    (d or self.d).diagnostics()))

    # The sinks.
    def wait_rcpt(self, sink, rcpt, timeout=15):
        """The message for rcpt at sink (polled)."""
        def find():
            for m in sink.messages():
                if rcpt in m.rcpt_to:
                    return m
            return None
        try:
            return harness.wait_until(find, timeout, what="%s at %s" % (rcpt, sink.address))
        except harness.HarnessError:
            raise AssertionError("%s did not arrive at %s within %ss; there: %r\n--- mainlog:\n%s\n%s"
                                 % (rcpt, sink.address, timeout, sink.messages(),
                                    self.mainlog_text()[-4000:], self.d.diagnostics()))

    def rcpts_at(self, sink):
        return [r for m in sink.messages() for r in m.rcpt_to]


# ---------------------------------------------------------------------------------------
# DNS-driven routing with dnsmasq.

class MxRoutingTest(DaemonTest):
    def test_mx_delivery(self):
        s2 = self.start_sink("127.0.0.2")
        s3 = self.start_sink("127.0.0.3")
        self.start_daemon()
        self.send("bob@mx.test", "mx delivery")
        m = self.wait_rcpt(s2, "bob@mx.test")
        self.assertEqual(m.mail_from, "alice@sender.test")
        self.assertEqual(m.subject, "mx delivery")
        self.assertIn("body of mx delivery", m.data)
        d = self.wait_record(self.msgid("bob@mx.test"), "D")
        self.assertEqual(d[5], "mx.test")
        self.assertEqual(d[9], "0", d)           # first attempt
        self.assertEqual(d[11], "127.0.0.2", d)
        self.assertEqual(s3.counters()["sess"], 0)

    def test_implicit_mx(self):
        s2 = self.start_sink("127.0.0.2")
        s3 = self.start_sink("127.0.0.3")
        self.start_daemon()
        self.send("carol@implicit.test", "implicit mx")
        self.wait_rcpt(s3, "carol@implicit.test")
        d = self.wait_record(self.msgid("carol@implicit.test"), "D")
        self.assertEqual(d[11], "127.0.0.3", d)
        self.assertEqual(s2.counters()["sess"], 0)

    def test_worse_preference_unused_while_better_up(self):
        s2 = self.start_sink("127.0.0.2")
        s3 = self.start_sink("127.0.0.3")
        self.start_daemon()
        rcpts = ["p%d@pref.test" % i for i in range(5)]
        for r in rcpts:
            self.send(r, "pref " + r)
        for r in rcpts:
            self.wait_rcpt(s2, r)
            self.assertEqual(self.wait_record(self.msgid(r), "D")[11], "127.0.0.2")
        self.assertEqual(s3.counters()["sess"], 0, "the preference-20 MX was contacted")
        self.assertEqual(s3.messages(), [])

    def test_next_preference_when_better_refuses(self):
        # 127.0.0.4 (preference 10) has no sink: connection refused -> the preference-20 MX.
        s3 = self.start_sink("127.0.0.3")
        self.start_daemon()
        self.send("dave@prefdown.test", "better mx down")
        self.wait_rcpt(s3, "dave@prefdown.test")
        mid = self.msgid("dave@prefdown.test")
        d = self.wait_record(mid, "D")
        self.assertEqual(d[11], "127.0.0.3", d)
        self.assertEqual(self.of(mid, "P"), [])

    def test_equal_preferences_spread(self):
        sinks = [self.start_sink(a) for a in SINK_ADDRS]
        # Hold the domain while the burst is injected, then release it all at once.
        held = 'Domain "spread.test" { Suspend_Delivery = true }\n'
        d = self.start_daemon(held)
        n = 200
        rcpts = ["u%03d@spread.test" % i for i in range(n)]

        def inject(part):
            with smtplib.SMTP("127.0.0.1", self.listen, timeout=30) as s:
                for r in part:
                    s.sendmail("alice@sender.test", [r], make_message("alice@sender.test", [r],
                                                                      "spread " + r))
        threads = [threading.Thread(target=inject, args=(rcpts[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        harness.wait_until(lambda: sum(1 for f in self.records() if f[4] == "R") >= n, 10,
                           what="%d R records" % n)
        self.assertEqual(sum(s.counters()["mesg"] for s in sinks), 0, "delivered while suspended")

        mark = len(d.paniclog())
        d.write_conf(config(self.listen, self.port, "%s:%d" % (DNS.address, DNS.port)))
        d.reload()
        d.wait_log("configuration reloaded", since=mark)
        try:
            harness.wait_until(lambda: sum(s.counters()["mesg"] for s in sinks) >= n, 40,
                               what="%d messages over the 4 sinks" % n)
        except harness.HarnessError:
            raise AssertionError("counters %r\n%s" % ([s.counters() for s in sinks],
                                                       d.diagnostics()))
        shares = {s.address: len(s.messages()) for s in sinks}
        self.assertEqual(sum(shares.values()), n, shares)
        for addr, k in shares.items():
            self.assertGreater(k, 0, "no share for %s: %r" % (addr, shares))
            self.assertLess(k, n, "all to %s: %r" % (addr, shares))
        got = sorted(r for s in sinks for r in self.rcpts_at(s))
        self.assertEqual(got, sorted(rcpts))
        # A D record follows the sink's 250: wait for the last ones.
        ds = harness.wait_until(
            lambda: (lambda r: r if len(r) >= n else None)(
                [f for f in self.records() if f[4] == "D" and f[5] == "spread.test"]),
            10, what="%d D records" % n)
        self.assertEqual(len(ds), n)
        self.assertEqual({f[11] for f in ds}, set(SINK_ADDRS))

    def test_nxdomain_fails(self):
        s5 = self.start_sink("127.0.0.5")    # sender.test: the bounce
        self.start_daemon()
        self.send("eve@nx.test", "nxdomain")
        mid = self.msgid("eve@nx.test")
        p = self.wait_record(mid, "P")
        self.assertTrue(p[13].startswith("554 5.4.4"), p)
        self.assertEqual(self.of(mid, "D"), [])
        bounce = self.wait_rcpt(s5, "alice@sender.test")
        self.assertIn("eve@nx.test", bounce.data)
        self.assertRegex(bounce.data, r"(?mi)^Status: 5\.4\.4")


class GatewayRoutesTest(DaemonTest):
    def test_gateway_and_routes(self):
        sinks = {a: self.start_sink(a) for a in SINK_ADDRS}
        dead = harness.free_port()           # nothing listens there
        self.start_daemon("""
Domain "gw.test" { Gateway = "127.0.0.3" }
Domain "gwname.test" { Gateway = "mx.name.test" }
Domain "rt.test" {
  Remote_SMTP_Port = %(dead)d
  Routes = ( "smtp://127.0.0.4?port=%(port)d&pref=10" )
}
Domain "rt2.test" {
  Remote_SMTP_Port = %(dead)d
  Routes = ( "smtp://127.0.0.5:%(port)d" )
}
Domain "rtpref.test" {
  Routes = ( "smtp://127.0.0.3?pref=20" "smtp://127.0.0.5?pref=10" )
}
Domain "rtname.test" {
  Remote_SMTP_Port = %(dead)d
  Routes = ( "smtp://mx.name.test?port=%(port)d" )
}
Domain "gwport.test" {
  Remote_SMTP_Port = %(dead)d
  Gateway = "mx.name.test:%(port)d"
}
""" % {"dead": dead, "port": self.port})
        where = {"g@gw.test": "127.0.0.3", "n@gwname.test": "127.0.0.4",
                 "r@rt.test": "127.0.0.4", "s@rt2.test": "127.0.0.5",
                 "p@rtpref.test": "127.0.0.5", "m@rtname.test": "127.0.0.4",
                 "q@gwport.test": "127.0.0.4"}
        for rcpt in where:
            self.send(rcpt, "route " + rcpt)
        for rcpt, addr in where.items():
            self.wait_rcpt(sinks[addr], rcpt)
            d = self.wait_record(self.msgid(rcpt), "D")
            self.assertEqual(d[11], addr, d)
        # The domains' own MX (127.0.0.2) was never used.
        self.assertEqual(sinks["127.0.0.2"].counters()["sess"], 0)
        self.assertEqual(sinks["127.0.0.2"].messages(), [])

    def test_gateway_follows_reload(self):
        s3 = self.start_sink("127.0.0.3")
        s4 = self.start_sink("127.0.0.4")
        dns = "%s:%d" % (DNS.address, DNS.port)
        d = self.start_daemon('Domain "gw.test" { Gateway = "127.0.0.3" Idle_Timeout = 0 }\n')
        self.send("before@gw.test", "gateway before reload")
        self.wait_rcpt(s3, "before@gw.test")
        # The session to 127.0.0.3 is closed (Idle_Timeout = 0): the next message needs a
        # new connection, which must follow the new Gateway.
        harness.wait_until(lambda: s3.counters()["quit"] >= 1, 10, what="QUIT at 127.0.0.3")
        mark = len(d.paniclog())
        d.write_conf(config(self.listen, self.port, dns,
                            'Domain "gw.test" { Gateway = "127.0.0.4" Idle_Timeout = 0 }\n'))
        d.reload()
        d.wait_log("configuration reloaded", since=mark)
        self.send("after@gw.test", "gateway after reload")
        d4 = self.wait_record(self.msgid("after@gw.test"), "D")
        # Known bug: routes_init() (src/queue/domain.c) runs only when domain_get()
        # creates the record, so a reload never reaches an existing domain's Gateway/Routes.
        self.assertEqual(d4[11], "127.0.0.4", "the reloaded Gateway is not used: %r" % d4)
        self.wait_rcpt(s4, "after@gw.test")


# ---------------------------------------------------------------------------------------
# Bindings.

BINDINGS = """
Binding "b1" { EHLO_Hostname = "b1.example.test" }
Binding_Group "g" {
  Binding "b2" { EHLO_Hostname = "b2.example.test" }
  Binding "b3" { EHLO_Hostname = "b3.example.test" }
}
"""


class BindingTest(DaemonTest):
    def test_x_binding_header(self):
        s2 = self.start_sink("127.0.0.2")
        self.start_daemon(BINDINGS)
        self.send("b1user@bind.test", "bound to b1", headers=["X-Binding: b1"])
        m = self.wait_rcpt(s2, "b1user@bind.test")
        d = self.wait_record(self.msgid("b1user@bind.test"), "D")
        self.assertEqual(d[8], "b1", d)
        self.assertNotRegex(m.data, r"(?mi)^X-Binding", "X-Binding reached the MX")
        self.assertIn("b1.example.test", m.helo or "", "EHLO name of binding b1")
        self.assertEqual(m.subject, "bound to b1")

    def test_x_binding_group_header(self):
        s2 = self.start_sink("127.0.0.2")
        self.start_daemon(BINDINGS)
        rcpts = ["g%d@bind.test" % i for i in range(6)]
        for r in rcpts:
            self.send(r, "group " + r, headers=["X-Binding-Group: g"])
        for r in rcpts:
            m = self.wait_rcpt(s2, r)
            d = self.wait_record(self.msgid(r), "D")
            self.assertIn(d[8], ("b2", "b3"), d)
            self.assertEqual(d[7], "g", d)
            self.assertIn("%s.example.test" % d[8], m.helo or "")
            self.assertNotRegex(m.data, r"(?mi)^X-Binding")

    def test_default_binding_none_refuses(self):
        s2 = self.start_sink("127.0.0.2")
        self.start_daemon(BINDINGS + "Default_Binding = none\n")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.send("nobind@bind.test", "no binding")
        self.assertEqual(cm.exception.smtp_code, 451, cm.exception)
        # A message that names a binding is still taken and delivered.
        self.send("withbind@bind.test", "named binding", headers=["X-Binding: b1"])
        self.wait_rcpt(s2, "withbind@bind.test")
        self.assertNotIn("nobind@bind.test", self.rcpts_at(s2))
        self.assertFalse(any(f[4] == "R" and f[5] == "nobind" for f in self.records()))

    def test_default_binding_suspended_then_normal(self):
        s2 = self.start_sink("127.0.0.2")
        d = self.start_daemon(BINDINGS + "Default_Binding = suspended\n")
        self.send("held@bind.test", "default binding held")
        self.send("moving@bind.test", "b1 moves", headers=["X-Binding: b1"])
        # The b1 message goes out; the default-bound one, injected first, does not.
        self.wait_rcpt(s2, "moving@bind.test")
        mid = self.msgid("held@bind.test")
        self.assertNotIn("held@bind.test", self.rcpts_at(s2))
        for kind in ("D", "T", "P"):
            self.assertEqual(self.of(mid, kind), [])

        mark = len(d.paniclog())
        d.write_conf(config(self.listen, self.port, "%s:%d" % (DNS.address, DNS.port),
                            BINDINGS + "Default_Binding = normal\n"))
        d.reload()
        d.wait_log("configuration reloaded", since=mark)
        self.wait_rcpt(s2, "held@bind.test", timeout=30)
        self.assertEqual(self.wait_record(mid, "D")[8], "default")


# ---------------------------------------------------------------------------------------
# Retries, restart, expiry.

class RetryTest(DaemonTest):
    def test_rcpt_4xx_then_delivered(self):
        self.start_sink("127.0.0.2", soft_fail=["RCPT"])
        self.start_daemon("Retry_Interval = 1\n")
        self.send("rita@retry.test", "retried")
        mid = self.msgid("rita@retry.test")
        t = self.wait_record(mid, "T")
        self.assertTrue(t[13].startswith("4"), t)
        self.assertEqual(t[9], "4", "stage: during RCPT TO: %r" % t)
        self.assertEqual(t[12], "127.0.0.2", t)
        s2 = self.replace_sink("127.0.0.2")
        self.wait_rcpt(s2, "rita@retry.test", timeout=20)
        d = self.wait_record(mid, "D")
        ts = self.of(mid, "T")
        self.assertGreaterEqual(len(ts), 1)
        self.assertEqual(self.of(mid, "P"), [])
        # "retries before this attempt" (docs/logs.md): 0, 1, ... on the T records, and the
        # number of failed attempts on the D record. (Known bug: qmsg_transient() in
        # src/queue/queue_outcome.c counts the attempt before it builds the T record's view.)
        self.assertEqual([f[10] for f in ts], [str(i) for i in range(len(ts))],
                         "retries field of the T records: %r" % ts)
        self.assertEqual(d[9], str(len(ts)), "retries in D vs T records: %r %r" % (d, ts))

    def test_retry_state_survives_restart(self):
        work = harness.TempDir(prefix="impetus-qdns-restart-")
        self.addCleanup(work.close)
        self.start_sink("127.0.0.2", soft_fail=["RCPT"])
        extra = "Retry_Interval = 5\n"
        d1 = self.start_daemon(extra, workdir=work.path)
        self.send("ron@restart.test", "across a restart")
        mid = self.msgid("ron@restart.test")
        t = self.wait_record(mid, "T")
        t_time = int(t[0])
        self.assertEqual(d1.stop(), 0, d1.diagnostics())
        self.assertEqual(len(self.of(mid, "T", d1)), 1)

        s2 = self.replace_sink("127.0.0.2")
        d2 = self.start_daemon(extra, workdir=work.path)
        self.wait_rcpt(s2, "ron@restart.test", timeout=20)
        dd = self.wait_record(mid, "D", d=d2)
        self.assertEqual(dd[9], "1", "retry count after the restart: %r" % dd)
        # The next attempt was kept: not before the T record's time + Retry_Interval.
        self.assertGreaterEqual(int(dd[0]), t_time + 4, "delivered too early: T %r D %r"
                                % (t, dd))
        self.assertEqual(len(s2.messages()), 1)

    def test_expiry_bounces(self):
        s2 = self.start_sink("127.0.0.2", soft_fail=["RCPT"])
        s5 = self.start_sink("127.0.0.5")
        self.start_daemon('Retry_Interval = 1\nDomain "exp.test" { Message_Expiration = 2 }\n')
        self.send("xena@exp.test", "expiring message", headers=["X-Original-Mark: keep-me"])
        mid = self.msgid("xena@exp.test")
        p = self.wait_record(mid, "P", timeout=20)
        self.assertTrue(p[13].startswith("554 5.4.7"), p)
        self.assertGreaterEqual(len(self.of(mid, "T")), 1)
        self.assertEqual(self.of(mid, "D"), [])
        self.assertEqual(s2.messages(), [])

        bounce = self.wait_rcpt(s5, "alice@sender.test")
        self.assertEqual(bounce.mail_from, "", "a bounce has the null reverse path")
        msg = bounce.message
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertTrue(msg.is_multipart())
        types = [part.get_content_type() for part in msg.get_payload()]
        self.assertEqual(types[:2], ["text/plain", "message/delivery-status"], types)
        self.assertIn(types[2], ("text/rfc822-headers", "message/rfc822"), types)
        status = msg.get_payload()[1].as_string()
        self.assertRegex(status, r"(?mi)^Final-Recipient:\s*rfc822;\s*xena@exp\.test\s*$")
        self.assertRegex(status, r"(?mi)^Status:\s*5\.4\.7\s*$")
        self.assertRegex(status, r"(?mi)^Action:\s*failed\s*$")
        original = msg.get_payload()[2].as_string()
        self.assertIn("Subject: expiring message", original)
        self.assertIn("X-Original-Mark: keep-me", original)

    def test_max_retries_zero(self):
        self.start_sink("127.0.0.2", soft_fail=["RCPT"])
        self.start_sink("127.0.0.5")
        self.start_daemon('Retry_Interval = 1\nDomain "maxr.test" { Max_Retries = 0 }\n')
        self.send("mia@maxr.test", "no retries")
        mid = self.msgid("mia@maxr.test")
        p = self.wait_record(mid, "P")
        self.assertTrue(p[13].startswith("554 5.4.7"), p)
        self.assertIn("max retries", p[13])
        self.assertEqual(self.of(mid, "T"), [])
        self.assertEqual(self.of(mid, "D"), [])
        # It failed at its first attempt: no retries before it (docs/logs.md, field 10).
        self.assertEqual(p[10], "0", "retries before this attempt: %r" % p)


class SuspendTest(DaemonTest):
    def test_suspend_delivery_domain(self):
        s2 = self.start_sink("127.0.0.2")
        s3 = self.start_sink("127.0.0.3")
        self.start_daemon('Domain "held.test" { Suspend_Delivery = true }\n')
        self.send("h@held.test", "held domain")
        self.send("f@free.test", "free domain")
        self.wait_rcpt(s3, "f@free.test")
        mid = self.msgid("h@held.test")
        for kind in ("D", "T", "P"):
            self.assertEqual(self.of(mid, kind), [])
        self.assertEqual(s2.counters()["sess"], 0)
        self.assertEqual(s2.messages(), [])


# ---------------------------------------------------------------------------------------
# Faults from FakeDns: null MX, SERVFAIL.

FAKE_ZONE = {
    "nullmx.test": {"mx": [[0, "."]]},
    "sf.test": {"rcode": "SERVFAIL"},
    "sender.test": {"mx": [[10, "h5.hosts.test"]]},
    "h5.hosts.test": {"a": ["127.0.0.5"]},
}


class FakeDnsTest(DaemonTest):
    def setUp(self):
        super().setUp()
        self.fake = fakedns.FakeDns(FAKE_ZONE)
        self.fake.start()
        self.addCleanup(self.fake.close)
        self.dns_server = self.fake.server

    def test_null_mx(self):
        s5 = self.start_sink("127.0.0.5")
        self.start_daemon()
        self.send("nora@nullmx.test", "null mx")
        mid = self.msgid("nora@nullmx.test")
        p = self.wait_record(mid, "P")
        self.assertTrue(p[13].startswith("556 5.1.10"), p)
        self.assertEqual(p[12], "", "no server was reached: %r" % p)
        self.assertEqual(self.of(mid, "D"), [])
        self.assertEqual(self.of(mid, "T"), [])
        bounce = self.wait_rcpt(s5, "alice@sender.test")
        self.assertRegex(bounce.data, r"(?mi)^Status:\s*5\.1\.10")
        self.assertNotIn("nora@nullmx.test", self.rcpts_at(s5))

    def test_servfail_purged_after_retries(self):
        self.start_sink("127.0.0.5")
        self.start_daemon('Domain "sf.test" { DNS_Failures_To_Purge = 2 }\n')
        self.send("sam@sf.test", "servfail")
        mid = self.msgid("sam@sf.test")
        p = self.wait_record(mid, "P", timeout=20)
        self.assertTrue(p[13].startswith("554 5.4.4"), p)
        self.assertEqual(self.of(mid, "D"), [])
        counts = self.fake.type_counts()
        self.assertGreaterEqual(counts.get("sf.test/MX", 0), 2,
                                "the MX lookup was not retried: %r" % counts)


if __name__ == "__main__":
    harness.main()
