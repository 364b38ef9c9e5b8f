"""test_peers.py: the harness's peers are real and behave as the daemon tests assume.

dnsmasq answers MX, A and AAAA for the configured .test names and NXDOMAIN for the rest;
smtp-sink records what smtplib and swaks send, and fails the commands it is told to fail;
every process the fixtures start is gone when they close, also after an exception, a
SIGTERM to the test process, or a SIGKILL of it (the watchdog).
"""

import os
import signal
import smtplib
import subprocess
import sys
import textwrap
import time
import unittest

import harness

SWAKS = harness.skip_unless("swaks")
harness.skip_unless("dnsmasq")
harness.skip_unless("smtp-sink")

HERE = os.path.dirname(os.path.abspath(__file__))

MX = {"d1.test": [(10, "mx1.sink.test")],
      "d2.test": [(10, "mx1.sink.test"), (20, "mx2.sink.test")]}
HOSTS = {"mx1.sink.test": "127.0.0.2",
         "mx2.sink.test": "127.0.0.3",
         "d2.test": "127.0.0.4",
         "v6.sink.test": ["::1", "127.0.0.5"]}


def gone(pid):
    """The process no longer exists and its process group is empty."""
    if harness.pid_alive(pid):
        return False
    try:
        os.killpg(pid, 0)
        return False
    except ProcessLookupError:
        return True


class DnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = harness.Dns(mx=MX, hosts=HOSTS)
        cls.dns.start()

    @classmethod
    def tearDownClass(cls):
        cls.dns.close()

    def test_mx_d1(self):
        r = self.dns.query("d1.test", "MX")
        self.assertEqual(r.rcode_name, "NOERROR", r)
        self.assertEqual(r.values("MX"), [(10, "mx1.sink.test")])

    def test_mx_d2_two_preferences(self):
        r = self.dns.query("d2.test", "MX")
        self.assertEqual(r.rcode_name, "NOERROR", r)
        self.assertEqual(sorted(r.values("MX")), [(10, "mx1.sink.test"), (20, "mx2.sink.test")])

    def test_a_of_mx_hosts(self):
        self.assertEqual(self.dns.query("mx1.sink.test", "A").values("A"), ["127.0.0.2"])
        self.assertEqual(self.dns.query("mx2.sink.test", "A").values("A"), ["127.0.0.3"])

    def test_a_of_domain_d2(self):
        r = self.dns.query("d2.test", "A")
        self.assertEqual(r.values("A"), ["127.0.0.4"])
        self.assertGreater(r.answers[0].ttl, 0)

    def test_aaaa(self):
        self.assertEqual(self.dns.query("v6.sink.test", "AAAA").values("AAAA"), ["::1"])
        self.assertEqual(self.dns.query("v6.sink.test", "A").values("A"), ["127.0.0.5"])

    def test_nodata_for_a_of_mx_only_domain(self):
        r = self.dns.query("d1.test", "A")
        self.assertEqual(r.rcode_name, "NOERROR", r)
        self.assertEqual(r.answers, [])

    def test_nxdomain(self):
        r = self.dns.query("nosuch.test", "MX")
        self.assertEqual(r.rcode_name, "NXDOMAIN", r)
        self.assertEqual(r.answers, [])
        self.assertEqual(self.dns.query("nosuch.test", "A").rcode_name, "NXDOMAIN")

    def test_name_compression_parsed(self):
        # dnsmasq compresses the MX target against the question name's suffix .test
        r = self.dns.query("d2.test", "MX")
        for rec in r.answers:
            self.assertEqual(rec.name, "d2.test")
            self.assertTrue(rec.value[1].endswith(".sink.test"), rec)

    def test_guards(self):
        with self.assertRaises(ValueError):
            harness.Dns(mx={"example.com": "mx1.sink.test"})
        with self.assertRaises(ValueError):
            harness.Dns(hosts={"mx1.sink.test": "192.0.2.1"})
        with self.assertRaises(ValueError):
            harness.Dns(address="0.0.0.0")
        with self.assertRaises(ValueError):
            self.dns.query("example.com", "A")


class DnsParserTest(unittest.TestCase):
    """The client's parser on a hand-built reply with a compression pointer."""

    def test_parse_mx_with_pointer(self):
        import struct
        q = harness.dns_build_query(0x1234, "d1.test", "MX")
        hdr = struct.pack(">HHHHHH", 0x1234, 0x8580, 1, 1, 0, 0)
        question = q[12:]
        # answer: name = pointer to offset 12 (d1.test), MX 10 "mx1" + pointer to ".test"
        rdata = struct.pack(">H", 10) + b"\x03mx1" + b"\xc0" + bytes([12 + 3])
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 300, len(rdata)) + rdata
        reply = harness.dns_parse_reply(hdr + question + answer, 0x1234)
        self.assertEqual(reply.rcode_name, "NOERROR")
        self.assertTrue(reply.aa)
        self.assertEqual(reply.answers[0].name, "d1.test")
        self.assertEqual(reply.values("MX"), [(10, "mx1.test")])

    def test_pointer_loop_rejected(self):
        import struct
        hdr = struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0)
        with self.assertRaises(harness.DnsError):
            harness.dns_parse_reply(hdr + b"\xc0\x0c" + b"\x00\x01\x00\x01", 1)


class SinkTest(unittest.TestCase):
    def test_smtplib_and_swaks_are_recorded(self):
        with harness.Sink("127.0.0.2") as sink:
            with smtplib.SMTP(sink.address, sink.port, local_hostname="client.test",
                              timeout=30) as s:
                refused = s.sendmail("b@client.test", ["a@d1.test", "c@d1.test"],
                                     "From: b@client.test\r\nTo: a@d1.test\r\n"
                                     "Subject: from smtplib\r\n\r\nhello sink\r\n.dot line\r\n")
                self.assertEqual(refused, {})
            r = subprocess.run([SWAKS, "--server", "%s:%d" % sink.server, "--to", "a@d1.test",
                                "--from", "b@client.test", "--helo", "client.test",
                                "--h-Subject", "from swaks", "--body", "hello from swaks",
                                "--silent"],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            msgs = sink.wait_for(2)
            self.assertEqual(len(msgs), 2, msgs)
            by_subject = {m.subject: m for m in msgs}
            self.assertEqual(set(by_subject), {"from smtplib", "from swaks"})

            m = by_subject["from smtplib"]
            self.assertEqual(m.mail_from, "b@client.test")
            self.assertEqual(m.rcpt_to, ["a@d1.test", "c@d1.test"])
            self.assertEqual(m.helo, "client.test")
            self.assertEqual(m.client_addr, "127.0.0.1")
            self.assertEqual(m.body, "hello sink\n.dot line\n")

            m = by_subject["from swaks"]
            self.assertEqual(m.mail_from, "b@client.test")
            self.assertEqual(m.rcpt_to, ["a@d1.test"])
            self.assertIn("hello from swaks", m.body)
            self.assertEqual(m.message["To"], "a@d1.test")
            self.assertEqual(sink.counters()["mesg"], 2)

    def test_hard_fail_rcpt(self):
        with harness.Sink("127.0.0.3", hard_fail=["RCPT"],
                          hard_reply="550 5.1.1 no such user here") as sink:
            with smtplib.SMTP(sink.address, sink.port, local_hostname="client.test",
                              timeout=30) as s:
                with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                    s.sendmail("b@client.test", ["a@d1.test"], "Subject: x\r\n\r\nx\r\n")
                code, text = cm.exception.recipients["a@d1.test"]
                self.assertEqual(code, 550)
                self.assertIn(b"no such user here", text)
            self.assertEqual(sink.messages(), [])

    def test_soft_fail_mail(self):
        with harness.Sink("127.0.0.4", soft_fail="MAIL") as sink:
            with smtplib.SMTP(*sink.server, local_hostname="client.test", timeout=30) as s:
                with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                    s.sendmail("b@client.test", ["a@d1.test"], "Subject: x\r\n\r\nx\r\n")
                self.assertEqual(cm.exception.smtp_code // 100, 4)
            self.assertEqual(sink.messages(), [])

    def test_fixed_port_and_second_address(self):
        port = harness.free_port("127.0.0.5")
        with harness.Sink("127.0.0.5", port=port) as sink:
            self.assertEqual(sink.server, ("127.0.0.5", port))
            with smtplib.SMTP("127.0.0.5", port, local_hostname="client.test", timeout=30) as s:
                s.sendmail("", ["postmaster@d2.test"], "Subject: bounce\r\n\r\nx\r\n")
            (m,) = sink.wait_for(1)
            self.assertEqual(m.mail_from, "")
            self.assertEqual(m.rcpt_to, ["postmaster@d2.test"])


class PeersTogetherTest(unittest.TestCase):
    def test_mx_lookup_leads_to_the_sink(self):
        with harness.TempDir() as tmp, \
                harness.Sink("127.0.0.2", workdir=tmp.path) as sink, \
                harness.Dns(mx=MX, hosts=HOSTS, workdir=tmp.path) as dns:
            (pref, host), = dns.query("d1.test", "MX").values("MX")
            (addr,) = dns.query(host, "A").values("A")
            self.assertEqual(addr, sink.address)
            with smtplib.SMTP(addr, sink.port, local_hostname="client.test", timeout=30) as s:
                s.sendmail("b@client.test", ["a@d1.test"], "Subject: via mx\r\n\r\nx\r\n")
            self.assertEqual(sink.wait_for(1)[0].subject, "via mx")


class CleanupTest(unittest.TestCase):
    def test_processes_gone_after_close(self):
        tmp = harness.TempDir()
        dns = harness.Dns(mx=MX, hosts=HOSTS, workdir=tmp.path)
        sink = harness.Sink("127.0.0.2", workdir=tmp.path)
        with tmp, dns, sink:
            pids = [dns.pid, sink.pid]
            self.assertTrue(all(harness.pid_alive(p) for p in pids))
            with open(dns.pidfile) as f:
                self.assertEqual(int(f.read().split()[0]), dns.pid)
        self.assertTrue(all(gone(p) for p in pids), pids)
        if not harness.KEEP_TEST_DIRS:
            self.assertFalse(os.path.exists(tmp.path))

    def test_processes_gone_after_exception(self):
        pids = []
        with self.assertRaises(RuntimeError):
            with harness.Dns(mx=MX) as dns, harness.Sink("127.0.0.3") as sink:
                pids = [dns.pid, sink.pid]
                raise RuntimeError("test failed inside the fixtures")
        self.assertEqual(len(pids), 2)
        self.assertTrue(all(gone(p) for p in pids), pids)

    def _child(self, extra_env=None):
        """A test process that starts dnsmasq and smtp-sink, prints their pids, waits."""
        script = textwrap.dedent("""
            import sys, time
            sys.path.insert(0, %r)
            import harness
            dns = harness.Dns(mx={"d1.test": "mx1.sink.test"}).start()
            sink = harness.Sink("127.0.0.4").start()
            print(dns.pid, sink.pid, dns.workdir, sink.workdir, flush=True)
            time.sleep(120)
        """ % HERE)
        env = dict(os.environ)
        env.update(extra_env or {})
        env.pop("KEEP_TEST_DIRS", None)
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                 env=env, start_new_session=True)
        def reap():
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        self.addCleanup(reap)
        line = child.stdout.readline().split()
        self.assertEqual(len(line), 4, child.stderr.read() if child.poll() is not None else line)
        dns_pid, sink_pid = int(line[0]), int(line[1])
        self.assertTrue(harness.pid_alive(dns_pid) and harness.pid_alive(sink_pid))
        return child, [dns_pid, sink_pid], line[2:]

    def test_sigterm_to_test_process_stops_peers(self):
        child, pids, dirs = self._child()
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
        self.assertTrue(all(gone(p) for p in pids), pids)
        self.assertFalse(any(os.path.exists(d) for d in dirs), dirs)

    def test_sigkill_to_test_process_stops_peers(self):
        child, pids, dirs = self._child()
        child.kill()
        child.wait(timeout=30)
        harness.wait_until(lambda: all(gone(p) for p in pids), 15,
                           what="the watchdog to stop %s" % pids)
        harness.wait_until(lambda: not any(os.path.exists(d) for d in dirs), 15,
                           what="the watchdog to remove %s" % dirs)


class SkipTest(unittest.TestCase):
    def _run(self, ci):
        env = dict(os.environ, CI=ci)
        script = "import sys; sys.path.insert(0, %r); import harness; " \
                 "harness.skip_unless('no-such-tool-impetus'); print('not reached')" % HERE
        return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)

    def test_missing_tool_skips_outside_ci(self):
        r = self._run("")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("SKIP", r.stdout)
        self.assertIn("no-such-tool-impetus", r.stdout)
        self.assertNotIn("not reached", r.stdout)

    def test_missing_tool_fails_in_ci(self):
        r = self._run("true")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no-such-tool-impetus", r.stderr)
        self.assertNotIn("not reached", r.stdout)


if __name__ == "__main__":
    harness.main()
