"""test_console.py: impetusctl against a running daemon with mail in its queues.

Every verb of the console (docs/console.md) is driven through the real client ($IMPETUSCTL)
over the daemon's Control_Listener socket, and its answer and its effect are checked: mail is
injected with smtplib, resolved through dnsmasq (harness.Dns) and delivered to smtp-sinks on
127.0.0.2 .. 127.0.0.5; outcomes are read at the sinks and in the mainlog (R/D/T/P records).

Covered: summary (and reset), domain <d> / all, binding summary (name, slot, group:g),
mailq / showqueue, flush domain (a delayed message goes now), binding flush domain, delay,
fail domain (bounce) and fail domain quiet (no bounce), message details / retry / fail,
rebind, refresh domain, config set / get / eval (a suspended binding delivers nothing until
resumed; the scope a value comes from), config reload (a limit changes live; a bad file is
refused), reopen logs, version, memory, help, a module's verb (conn_failure_log counts),
errors (one line, exit 1), the socket's mode, TCP Listen, interactive mode with history,
and shutdown.
"""

import os
import re
import smtplib
import socket
import stat
import subprocess
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()
harness.skip_unless("dnsmasq")
harness.skip_unless("smtp-sink")
IMPETUSCTL = os.environ.get("IMPETUSCTL") or os.path.join(os.path.dirname(IMPETUSD), "impetusctl")
if not os.access(IMPETUSCTL, os.X_OK):
    harness.skip_whole_test("impetusctl not found at %s (set IMPETUSCTL)" % IMPETUSCTL)
MODULE_DIR = os.environ.get("IMPETUS_MODULE_DIR") or os.path.join(os.path.dirname(IMPETUSD),
                                                                   "modules")

SINK_ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
HOSTS = {"h2.hosts.test": "127.0.0.2", "h3.hosts.test": "127.0.0.3",
         "h4.hosts.test": "127.0.0.4", "h5.hosts.test": "127.0.0.5"}
MX = {name: [(10, "h2.hosts.test")] for name in (
    "held.test", "held2.test", "free.test", "retry.test", "bind.test", "dl.test", "msg.test",
    "lim.test")}
MX["sender.test"] = [(10, "h5.hosts.test")]     # bounces arrive at .5
MX["dead.test"] = [(10, "h4.hosts.test")]       # nothing listens at .4: connection refused

DNS = None


def setUpModule():
    global DNS
    DNS = harness.Dns(mx=MX, hosts=HOSTS, ttl=300)
    DNS.start()


def tearDownModule():
    if DNS is not None:
        DNS.close()


def config(listen_port, sink_port, extra=""):
    return """\
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
Relay_Hosts = ( "127.0.0.0/8" )
DNS_Servers = ( "%(dns)s" )
DNS_Timeout = 500
Remote_SMTP_Port = %(sink_port)d
Host_Failure_Retry = 1
Idle_Timeout = 1
ec_logger {
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/mainlog.ec"
  Heartbeat = 0
}
ESMTP_Listener {
  Listen "127.0.0.1:%(listen)d" { }
}
Control_Listener {
  Listen "var/run/control.sock" { }
}
Binding "b1" { }
Binding_Group "g" {
  Binding "b2" { }
}
%(extra)s
""" % {"dns": "%s:%d" % (DNS.address, DNS.port), "sink_port": sink_port,
       "listen": listen_port, "extra": extra}


def sink_port():
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


def parse_mainlog(text):
    fields_of = {"R": 14, "D": 12, "T": 14, "P": 14}
    out = []
    for line in text.splitlines():
        head = line.split("@", 5)
        if len(head) < 5 or head[4] not in fields_of:
            continue
        fields = line.split("@", fields_of[head[4]] - 1)
        if len(fields) == fields_of[head[4]]:
            out.append(fields)
    return out


class ConsoleTest(unittest.TestCase):
    extra = ""

    def setUp(self):
        self.port = sink_port()
        self.sinks = {}
        self.listen = harness.free_port()
        self.d = harness.Daemon(config(self.listen, self.port, self.extra))
        self.addCleanup(self.d.close)
        self.d.start()
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.listen)), 10,
                           what="the daemon's listener")
        self.sock = os.path.join(self.d.workdir, "var/run/control.sock")
        harness.wait_until(lambda: os.path.exists(self.sock), 10, what="the console socket")

    # The console.
    def ctl(self, *words, sock=None, stdin=None, expect=0):
        """Run impetusctl; (stdout, stderr). The exit status must be expect."""
        argv = [IMPETUSCTL, "-s", sock or self.sock] + list(words)
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        if expect is not None:
            self.assertEqual(p.returncode, expect, "impetusctl %s: rc %d\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(words), p.returncode, p.stdout, p.stderr))
        return p.stdout, p.stderr

    def ok(self, *words):
        return self.ctl(*words)[0]

    def err(self, *words):
        out, err = self.ctl(*words, expect=1)
        self.assertEqual(out, "")
        self.assertEqual(len(err.strip().splitlines()), 1, "one line: %r" % err)
        return err.strip()

    # Peers and mail.
    def start_sink(self, addr, **kw):
        s = harness.Sink(addr, port=self.port, **kw)
        s.start()
        self.addCleanup(s.close)
        self.sinks[addr] = s
        return s

    def replace_sink(self, addr, **kw):
        self.sinks[addr].close()
        return self.start_sink(addr, **kw)

    def send(self, rcpt, subject, sender="alice@sender.test", headers=()):
        lines = ["From: <%s>" % sender, "To: <%s>" % rcpt, "Subject: %s" % subject]
        lines += list(headers)
        with smtplib.SMTP("127.0.0.1", self.listen, timeout=20) as s:
            s.sendmail(sender, [rcpt], "\r\n".join(lines) + "\r\n\r\nbody\r\n")

    def records(self):
        return parse_mainlog(harness._read(os.path.join(self.d.workdir, "var/log/mainlog.ec")))

    def msgid(self, rcpt):
        local, _, domain = rcpt.rpartition("@")

        def find():
            for f in self.records():
                if f[4] == "R" and f[5] == local and f[6] == domain:
                    return f[1]
            return None
        return harness.wait_until(find, 10, what="R record of %s" % rcpt)

    def of(self, mid, kind):
        return [f for f in self.records() if f[1] == mid and f[4] == kind]

    def wait_record(self, mid, kind, timeout=15):
        return harness.wait_until(lambda: (self.of(mid, kind) or [None])[0], timeout,
                                  what="%s record of %s" % (kind, mid))

    def wait_rcpt(self, sink, rcpt, timeout=15):
        return harness.wait_until(
            lambda: next((m for m in sink.messages() if rcpt in m.rcpt_to), None), timeout,
            what="%s at %s" % (rcpt, sink.address))

    def rcpts_at(self, sink):
        return [r for m in sink.messages() for r in m.rcpt_to]

    def summary(self):
        out = self.ok("summary")
        values = {}
        for line in out.splitlines():
            key, _, rest = line.partition(": ")
            if rest:
                values[key] = rest.split()[0]
        return values


class StatusTest(ConsoleTest):
    extra = 'Domain "held.test" { Suspend_Delivery = true }\n'

    def test_status_verbs(self):
        s2 = self.start_sink("127.0.0.2")
        self.send("h1@held.test", "held one")
        self.send("h2@held.test", "held two", headers=["X-Binding: b1"])
        self.send("f@free.test", "free")
        self.wait_rcpt(s2, "f@free.test")
        mid = self.msgid("h1@held.test")
        self.msgid("h2@held.test")

        st = harness.wait_until(lambda: (lambda v: v if v.get("Active queue") == "2" else None)(
            self.summary()), 10, what="2 active messages in the summary")
        self.assertEqual(st["Received"], "3", st)
        self.assertEqual(st["Delivered"], "1", st)
        self.assertEqual(st["Total queue"], "2", st)
        self.assertIn("Uptime", st)
        # Inbound: "N (M since start)"; the three injections were sessions.
        inbound = self.ok("summary")
        m = re.search(r"(?m)^Inbound connections: (\d+) \((\d+) since start\)$", inbound)
        self.assertIsNotNone(m, inbound)
        self.assertGreaterEqual(int(m.group(2)), 3, inbound)
        self.assertEqual(self.ok("summary", "reset"), "summary counters reset\n")
        self.assertEqual(self.summary()["Received"], "0")

        for verb in ("mailq", "showqueue"):
            out = self.ok(verb)
            rows = [l.split() for l in out.splitlines() if l.startswith("held.test")]
            self.assertEqual(sorted((r[1], r[2]) for r in rows), [("b1", "1"), ("default", "1")],
                             out)
            self.assertIn("total: 2 active, 0 delayed", out)

        # A suspended domain is never looked up: refresh asks for its MX now.
        self.assertEqual(self.ok("refresh", "domain", "held.test"),
                         "held.test: looking up again\n")
        out = harness.wait_until(lambda: (lambda o: o if "dns: ready" in o else None)(
            self.ok("domain", "held.test")), 10, what="held.test resolved")
        self.assertIn("domain held.test", out)
        self.assertIn("host h2.hosts.test pref 10", out)
        self.assertIn("address 127.0.0.2:%d" % self.port, out)
        self.assertRegex(out, r"binding default \(slot 0\): active 1")
        self.assertRegex(out, r"binding b1 \(slot \d+\): active 1")
        # The domain that delivered: per-address connect and delivery latency.
        out = self.ok("domain", "free.test")
        self.assertRegex(out, r"address 127\.0\.0\.2:\d+ .*connect \d+ms  delivery \d+ms", out)
        out = self.ok("domain", "all")
        self.assertRegex(out, r"(?m)^held\.test\s+2\s+0\s")
        self.assertRegex(out, r"(?m)^free\.test\s+0\s+0\s+\d+\s+ready\s+1\s+1\s")

        out = self.ok("binding", "summary")
        self.assertRegex(out, r"(?m)^b1\s+\d+\s+default\s+1\s+1\s")
        self.assertRegex(out, r"(?m)^b2\s+\d+\s+g\s+0\s+0\s")
        self.assertNotIn("b1", self.ok("binding", "summary", "group:g"))
        self.assertIn("b2", self.ok("binding", "summary", "group:g"))
        self.assertRegex(self.ok("binding", "summary", "0"), r"(?m)^default\s+0\s")
        self.assertIn("no binding matches", self.err("binding", "summary", "nosuch"))

        out = self.ok("message", "details", mid)
        self.assertIn("to: <h1@held.test>", out)
        self.assertIn("from: <alice@sender.test>", out)
        self.assertIn("queue: active", out)
        self.assertIn("binding: default", out)

        self.assertRegex(self.ok("version"), r"^impetusd \d+\.\d+\.\d+ \(pid %d" % self.d.proc.pid)
        self.assertIn("VmRSS:", self.ok("memory"))
        out = self.ok("help")
        for verb in ("summary", "domain", "binding summary", "flush domain", "fail domain",
                     "message details", "config set", "reopen logs", "shutdown"):
            self.assertIn(verb, out)

        self.assertIn('unknown command "bogus"', self.err("bogus"))
        self.assertIn("domain not in the queues: nowhere.test",
                      self.err("domain", "nowhere.test"))
        self.assertIn("usage: flush domain", self.err("flush"))
        self.assertIn("no queued message", self.err("message", "details", "nosuchid"))
        self.assertIn("unknown binding", self.err("binding", "flush", "domain", "zz", "held.test"))

        mode = os.stat(self.sock).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o660)

    def test_reopen_logs_and_interactive(self):
        log = os.path.join(self.d.workdir, "var/log/mainlog.ec")
        self.send("f@free.test", "before rotation")
        self.msgid("f@free.test")
        os.rename(log, log + ".1")
        self.assertEqual(self.ok("reopen", "logs"), "logs reopened\n")
        self.d.wait_log("logs reopened")
        self.send("g@free.test", "after rotation")
        harness.wait_until(lambda: any(f[4] == "R" and f[5] == "g" for f in self.records()), 10,
                           what="the R record in the new mainlog")
        self.assertNotIn("@f@free.test", harness._read(log))

        out, err = self.ctl(stdin="version\nsummary\nhistory\n!1\nbogus\nquit\n", expect=1)
        self.assertEqual(out.count("impetusd "), 3, out)     # version, summary, !1
        self.assertIn("    1  version", out)
        self.assertIn("    2  summary", out)
        self.assertIn('unknown command "bogus"', err)


class QueueControlTest(ConsoleTest):
    extra = 'Retry_Interval = 3600\nDomain "held.test" { Suspend_Delivery = true }\n' \
            'Domain "held2.test" { Suspend_Delivery = true }\n'

    def test_flush_domain_delivers_now(self):
        self.start_sink("127.0.0.2", soft_fail=["RCPT"])
        self.send("r@retry.test", "retried by flush")
        mid = self.msgid("r@retry.test")
        self.wait_record(mid, "T")
        s2 = self.replace_sink("127.0.0.2")
        out = self.ok("showqueue")
        self.assertRegex(out, r"(?m)^retry\.test\s+default\s+0\s+1\s", out)
        self.assertIn("queue: delayed", self.ok("message", "details", mid))
        time.sleep(1.5)
        self.assertEqual(s2.messages(), [], "delivered before the flush")
        self.assertEqual(self.ok("flush", "domain", "retry.test"), "1 messages due now\n")
        self.wait_rcpt(s2, "r@retry.test", timeout=10)
        self.wait_record(mid, "D")

    def test_binding_flush_domain(self):
        self.start_sink("127.0.0.2", soft_fail=["RCPT"])
        self.send("a@retry.test", "default binding")
        self.send("b@retry.test", "b1 binding", headers=["X-Binding: b1"])
        ma, mb = self.msgid("a@retry.test"), self.msgid("b@retry.test")
        self.wait_record(ma, "T")
        self.wait_record(mb, "T")
        s2 = self.replace_sink("127.0.0.2")
        self.assertEqual(self.ok("binding", "flush", "domain", "b1", "retry.test"),
                         "1 messages due now\n")
        self.wait_rcpt(s2, "b@retry.test", timeout=10)
        time.sleep(1.0)
        self.assertNotIn("a@retry.test", self.rcpts_at(s2))
        self.assertEqual(self.of(ma, "D"), [])

    def test_fail_domain_bounces(self):
        s5 = self.start_sink("127.0.0.5")
        self.start_sink("127.0.0.2")
        self.send("x@held.test", "failed by the console")
        self.send("y@held2.test", "failed quietly")
        mx, my = self.msgid("x@held.test"), self.msgid("y@held2.test")
        self.assertEqual(self.ok("fail", "domain", "held.test"), "1 messages failed\n")
        p = self.wait_record(mx, "P")
        self.assertTrue(p[13].startswith("554 5.0.0"), p)
        bounce = self.wait_rcpt(s5, "alice@sender.test")
        self.assertIn("x@held.test", bounce.data)

        self.assertEqual(self.ok("fail", "domain", "quiet", "held2.test", "550", "5.7.1",
                                 "no", "thanks"), "1 messages failed\n")
        p = self.wait_record(my, "P")
        self.assertEqual(p[13], "550 5.7.1 no thanks", p)
        time.sleep(1.5)
        self.assertEqual(len(s5.messages()), 1, "a quiet failure bounced")
        self.assertIn("total: 0 active", self.ok("showqueue"))

    def test_delay_and_message_retry_and_fail(self):
        s2 = self.start_sink("127.0.0.2")
        self.start_sink("127.0.0.5")
        self.ok("config", "set", "domain", "dl.test", "Suspend_Delivery", "true")
        self.send("d1@dl.test", "delayed then retried")
        self.send("d2@dl.test", "delayed then failed")
        m1, m2 = self.msgid("d1@dl.test"), self.msgid("d2@dl.test")
        harness.wait_until(lambda: "active 2" in self.ok("domain", "dl.test"), 10,
                           what="2 active messages of dl.test")
        self.assertEqual(self.ok("delay", "3600", "--domain", "dl.test"),
                         "2 messages delayed by 3600s\n")
        self.assertRegex(self.ok("showqueue"), r"(?m)^dl\.test\s+default\s+0\s+2\s")
        self.assertIn("queue: delayed", self.ok("message", "details", m1))
        self.ok("config", "set", "domain", "dl.test", "Suspend_Delivery", "false")
        time.sleep(1.5)
        self.assertEqual(s2.messages(), [], "delayed mail went out")
        self.assertEqual(self.ok("message", "retry", m1), "message %s: due now\n" % m1)
        self.wait_rcpt(s2, "d1@dl.test", timeout=10)
        self.assertEqual(self.ok("message", "fail", "quiet", m2), "message %s: failed quietly\n" % m2)
        p = self.wait_record(m2, "P")
        self.assertIn("console: message fail", p[13])
        self.assertIn("no queued message", self.err("message", "retry", m2))
        self.assertNotIn("d2@dl.test", self.rcpts_at(s2))

    def test_rebind_and_refresh(self):
        s2 = self.start_sink("127.0.0.2")
        self.ok("config", "set", "binding", "b1", "Suspend_Delivery", "true")
        self.send("rb@bind.test", "moved to b2", headers=["X-Binding: b1"])
        mid = self.msgid("rb@bind.test")
        harness.wait_until(lambda: "binding b1" in self.ok("domain", "bind.test"), 10,
                           what="the message queued on b1")
        self.assertIn("moves to binding b2", self.ok("rebind", "b1", "bind.test", "--to", "b2"))
        d = self.wait_record(mid, "D")
        self.assertEqual(d[8], "b2", d)
        self.wait_rcpt(s2, "rb@bind.test")
        self.assertIn("unknown binding", self.err("rebind", "nosuch", "--to", "b2"))
        self.assertEqual(self.ok("refresh", "domain", "bind.test"),
                         "bind.test: looking up again\n")
        self.assertIn("not in the queues", self.err("refresh", "domain", "never.test"))


class ConfigTest(ConsoleTest):
    def test_suspended_binding_until_resumed(self):
        s2 = self.start_sink("127.0.0.2")
        out = self.ok("config", "set", "binding", "b1", "Suspend_Delivery", "true")
        self.assertRegex(out, r"^Suspend_Delivery set \(generation \d+\)\n$")
        self.assertRegex(self.ok("config", "eval", "binding", "b1", "domain", "bind.test",
                                 "Suspend_Delivery"),
                         r'^Suspend_Delivery = true  \(from Binding "b1" at .*\)\n$')
        self.assertRegex(self.ok("config", "get", "binding", "b1", "Suspend_Delivery"),
                         r"^Suspend_Delivery = true")
        self.assertIn("unset in this scope", self.ok("config", "get", "Suspend_Delivery"))
        self.assertRegex(self.ok("binding", "summary", "b1"), r"(?m)^b1\s.*\syes$")
        self.send("s@bind.test", "suspended binding", headers=["X-Binding: b1"])
        self.send("n@bind.test", "default binding")
        self.wait_rcpt(s2, "n@bind.test")
        mid = self.msgid("s@bind.test")
        time.sleep(1.5)
        self.assertNotIn("s@bind.test", self.rcpts_at(s2))
        self.assertEqual(self.of(mid, "D") + self.of(mid, "T"), [])
        self.assertRegex(self.ok("binding", "summary", "b1"), r"(?m)^b1\s+\d+\s+default\s+1\s+1\s")

        self.ok("config", "set", "binding", "b1", "Suspend_Delivery", "false")
        self.wait_rcpt(s2, "s@bind.test", timeout=10)
        self.assertEqual(self.wait_record(mid, "D")[8], "b1")
        # A binding inside a group is set inside it; the group's value is inherited.
        self.ok("config", "set", "binding_group", "g", "Suspend_Delivery", "true")
        self.assertRegex(self.ok("config", "eval", "binding", "b2", "Suspend_Delivery"),
                         r'= true  \(from Binding_Group "g" at')
        self.ok("config", "set", "binding", "b2", "Suspend_Delivery", "false")
        self.assertRegex(self.ok("config", "eval", "binding", "b2", "Suspend_Delivery"),
                         r'= false  \(from Binding_Group "g" > Binding "b2" at')
        self.assertIn("(default)", self.ok("config", "eval", "Suspend_Delivery"))

        self.assertIn("unknown option", self.err("config", "set", "No_Such_Option", "1"))
        self.assertIn("unknown binding", self.err("config", "set", "binding", "zz",
                                                  "Suspend_Delivery", "true"))
        self.assertIn("expected", self.err("config", "set", "Max_Outbound_Connections", "many"))
        self.assertIn("restart", self.err("config", "set", "Spoolbase", "elsewhere"))

    def test_reload_changes_limit_live(self):
        self.assertRegex(self.ok("config", "eval", "domain", "lim.test",
                                 "Max_Outbound_Connections"), r"= 32  \(default\)")
        self.ok("config", "set", "domain", "lim.test", "Max_Outbound_Connections", "2")
        self.assertRegex(self.ok("config", "eval", "domain", "lim.test",
                                 "Max_Outbound_Connections"), r'= 2  \(from Domain "lim.test"')
        self.d.write_conf(config(self.listen, self.port,
                                 'Domain "lim.test" { Max_Outbound_Connections = 1 }\n'))
        out = self.ok("config", "reload")
        self.assertRegex(out, r"^configuration reloaded from .* \(generation \d+\)\n$")
        self.assertRegex(self.ok("config", "eval", "domain", "lim.test",
                                 "Max_Outbound_Connections"),
                         r'= 1  \(from Domain "lim.test" at .*impetusd\.conf:\d+\)')
        # The limit is live: with 0 connections allowed nothing goes out, with 1 it does.
        s2 = self.start_sink("127.0.0.2")
        self.ok("config", "set", "domain", "lim.test", "Max_Outbound_Connections", "0")
        for i in range(3):
            self.send("l%d@lim.test" % i, "limited %d" % i)
        self.msgid("l2@lim.test")
        time.sleep(1.5)
        self.assertEqual(s2.messages(), [], "sent with Max_Outbound_Connections = 0")
        out = self.ok("config", "reload")
        for i in range(3):
            self.wait_rcpt(s2, "l%d@lim.test" % i)
        self.d.write_conf("this is { not a configuration\n")
        self.assertIn("reload refused", self.err("config", "reload"))
        self.assertRegex(self.ok("config", "eval", "domain", "lim.test",
                                 "Max_Outbound_Connections"), r"= 1 ")


class ModuleAndShutdownTest(ConsoleTest):
    port_tcp = None
    extra = ""

    def setUp(self):
        if not os.path.exists(os.path.join(MODULE_DIR, "conn_failure_log.so")):
            self.skipTest("conn_failure_log.so not built in %s" % MODULE_DIR)
        ModuleAndShutdownTest.port_tcp = harness.free_port()
        self.extra = """
Module_Search_Path = ( "%s" )
conn_failure_log { path = "var/log/connfail.log" }
Control_Listener "tcp" { Listen "127.0.0.1:%d" { } }
""" % (MODULE_DIR, ModuleAndShutdownTest.port_tcp)
        super().setUp()

    def test_module_verb_tcp_and_shutdown(self):
        self.send("z@dead.test", "to a dead MX")
        harness.wait_until(lambda: "dead.test" in self.ok("conn_failure_log", "counts"), 15,
                           what="a counted failure for dead.test")
        out = self.ok("conn_failure_log", "counts")
        self.assertRegex(out, r"(?m)^dead\.test \d+$")
        self.assertIn("unknown verb", self.err("conn_failure_log", "nosuchverb"))

        tcp = "127.0.0.1:%d" % ModuleAndShutdownTest.port_tcp
        self.assertRegex(self.ctl("version", sock=tcp)[0], r"^impetusd ")

        self.assertEqual(self.ok("shutdown"), "shutting down\n")
        self.assertEqual(self.d.wait(15), 0, self.d.diagnostics())
        self.d.wait_log("console: shutdown requested")
        self.assertFalse(os.path.exists(self.sock), "the socket file was left behind")
        out, err = self.ctl("version", expect=2)
        self.assertIn("cannot connect", err)


if __name__ == "__main__":
    harness.main()
