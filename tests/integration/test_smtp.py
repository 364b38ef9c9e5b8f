"""test_smtp.py: the ESMTP listener of the real daemon, with real clients.

Python's smtplib and swaks, plus a raw socket client for what smtplib will not send
(pipelined batches, smuggling attempts, over-long lines, garbage). Acceptance is observed
through the replies and through the mainlog's R records (one per recipient-message stored).
"""

import os
import re
import smtplib
import socket
import subprocess
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()

BASE = """\
Spoolbase = "var/spool"
# Reception tests: mail stays in the spool to be inspected (no delivery attempts).
Suspend_Delivery = true
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
ec_logger {
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/mainlog.ec"
  Rejectlog = "var/log/rejectlog.ec"
  Heartbeat = 0
}
"""


def listener(port, body="", extra=""):
    return BASE + extra + """
ESMTP_Listener {
  Banner_Hostname = "mx.impetus.test"
  Relay_Domains = ( "allowed.test" "*.wild.test" )
%s
  Listen "127.0.0.1:%d" { }
}
""" % (body, port)


class Raw:
    """A plain SMTP client over a socket: send bytes, read whole replies."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One (possibly multi-line) reply: (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % (self.buf,))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


class SmtpTestBase(unittest.TestCase):
    extra = ""
    body = ""

    def setUp(self):
        self.port = harness.free_port()
        self.d = harness.Daemon(listener(self.port, self.body, self.extra))
        self.addCleanup(self.d.close)
        self.d.start()
        self.d.wait_log("started")
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.port)), 10, what="listener up")

    def raw(self):
        r = Raw(self.port)
        self.addCleanup(r.close)
        code, text = r.reply()
        self.assertEqual(code, 220, text)
        return r

    def mainlog(self):
        return harness._read(os.path.join(self.d.workdir, "var/log/mainlog.ec"))

    def receptions(self):
        return [l for l in self.mainlog().splitlines() if "@R@" in l]

    def wait_receptions(self, n, timeout=10):
        harness.wait_until(lambda: len(self.receptions()) >= n, timeout,
                           what="%d R records" % n)
        time.sleep(0.3)         # and no more than that
        return self.receptions()


class CommandSetTest(SmtpTestBase):
    def test_banner_and_ehlo_extensions(self):
        r = self.raw()
        code, text = r.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        for ext in ("PIPELINING", "SIZE 20971520", "8BITMIME", "ENHANCEDSTATUSCODES",
                    "SMTPUTF8", "DSN", "CHUNKING"):
            self.assertIn(ext, text)
        self.assertNotIn("STARTTLS", text)
        self.assertTrue(text.startswith("250-mx.impetus.test"), text)

    def test_whole_command_set(self):
        r = self.raw()
        self.assertEqual(r.cmd("HELO client.test")[0], 250)
        self.assertEqual(r.cmd("NOOP")[0], 250)
        self.assertEqual(r.cmd("HELP")[0], 214)
        self.assertEqual(r.cmd("VRFY postmaster")[0], 502)
        self.assertEqual(r.cmd("EXPN list")[0], 502)
        self.assertEqual(r.cmd("XYZZY")[0], 502)
        self.assertEqual(r.cmd("RCPT TO:<a@allowed.test>")[0], 503)      # no MAIL yet
        self.assertEqual(r.cmd("DATA")[0], 503)
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test>")[0], 250)
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test>")[0], 503)     # nested
        self.assertEqual(r.cmd("DATA")[0], 554)                          # no recipients
        self.assertEqual(r.cmd("RCPT TO:<a@allowed.test>")[0], 250)
        self.assertEqual(r.cmd("RSET")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<a@allowed.test>")[0], 503)      # RSET ended it
        self.assertEqual(r.cmd("MAIL FROM:<>")[0], 250)                  # null sender
        self.assertEqual(r.cmd("RCPT TO:<a@allowed.test>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<b@sub.wild.test>")[0], 250)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send("Subject: t\r\n\r\nbody\r\n.\r\n")
        code, text = r.reply()
        self.assertEqual(code, 250, text)
        self.assertRegex(text, r"queued as \S+")
        self.assertEqual(r.cmd("QUIT")[0], 221)
        self.assertTrue(r.closed())
        recs = self.wait_receptions(2)
        self.assertEqual(len(recs), 2, recs)
        fields = recs[0].split("@")
        self.assertEqual(fields[4], "R")
        self.assertEqual(fields[6], "allowed.test")

    def test_smtplib_and_swaks(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as c:
            c.ehlo("client.test")
            refused = c.sendmail("s@client.test", ["x@allowed.test", "y@allowed.test"],
                                 "Subject: hi\r\n\r\nhello\r\n")
            self.assertEqual(refused, {})
        harness.skip_unless("swaks")
        out = subprocess.run([harness.find_tool("swaks"), "--server", "127.0.0.1:%d" % self.port,
                              "--to", "z@allowed.test", "--from", "s@client.test",
                              "--h-Subject", "swaks", "--body", "from swaks"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(len(self.wait_receptions(3)), 3)

    def test_pipelining_and_second_transaction_in_one_write(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.send("MAIL FROM:<s@client.test>\r\nRCPT TO:<a@allowed.test>\r\nRCPT TO:<b@denied.test>\r\n"
               "DATA\r\nSubject: one\r\n\r\nfirst\r\n.\r\n"
               "MAIL FROM:<s@client.test>\r\nRCPT TO:<c@allowed.test>\r\nDATA\r\n"
               "Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        codes = [r.reply()[0] for _ in range(9)]
        self.assertEqual(codes, [250, 250, 550, 354, 250, 250, 250, 354, 250])
        self.assertEqual(r.reply()[0], 221)
        self.assertEqual(len(self.wait_receptions(2)), 2)

    def test_bdat(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<s@client.test>")
        r.cmd("RCPT TO:<a@allowed.test>")
        chunk1 = b"Subject: chunked\r\n\r\n"
        chunk2 = b"part two\r\n"
        r.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        self.assertEqual(r.reply()[0], 250)
        r.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        code, text = r.reply()
        self.assertEqual(code, 250, text)
        self.assertIn("queued", text)
        self.assertEqual(len(self.wait_receptions(1)), 1)

    def spool_show(self, batch):
        tool = os.path.join(os.path.dirname(IMPETUSD), "impetus-spool")
        out = subprocess.run([tool, "show", batch, os.path.join(self.d.workdir, "var/spool")],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return out.stdout

    def test_extension_parameters_are_kept(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        code, text = r.cmd("MAIL FROM:<s@client.test> BODY=8BITMIME SIZE=300 RET=HDRS ENVID=env+2B1")
        self.assertEqual(code, 250, text)
        code, text = r.cmd("RCPT TO:<a@allowed.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40allowed.test")
        self.assertEqual(code, 250, text)
        code, text = r.cmd("RCPT TO:<b@allowed.test> NOTIFY=NEVER")
        self.assertEqual(code, 250, text)
        r.cmd("DATA")
        r.send("Subject: caf\xc3\xa9\r\n\r\n8bit body \xc3\xa9\r\n.\r\n".encode("latin-1"))
        code, text = r.reply()
        self.assertEqual(code, 250, text)
        shown = self.spool_show(re.search(r"queued as (\S+)", text).group(1))
        self.assertIn("envid: env+2B1", shown)
        self.assertIn("RET: HDRS", shown.upper())
        self.assertIn("8BITMIME", shown.upper())
        self.assertRegex(shown, r"rcpt 0: \S+ a@allowed.test orcpt=rfc822;a\+40allowed.test notify=0x6")
        self.assertRegex(shown, r"rcpt 1: \S+ b@allowed.test orcpt=- notify=0x1")
        self.assertIn("8bit body \xc3\xa9".encode("latin-1").decode("utf-8"), shown)
        # SMTPUTF8: an internationalised address needs the parameter.
        self.assertEqual(r.cmd("MAIL FROM:<jos\u00e9@client.test>")[0], 553)
        code, text = r.cmd("MAIL FROM:<jos\u00e9@client.test> SMTPUTF8")
        self.assertEqual(code, 250, text)
        self.assertEqual(r.cmd("RCPT TO:<\u00fcser@allowed.test>")[0], 250)
        self.assertEqual(r.cmd("RSET")[0], 250)
        # Disabled or unknown parameters are refused.
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test> FOO=BAR")[0], 555)
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test> BODY=BINARYMIME")[0], 555)

    def test_garbage_and_long_lines_keep_the_session(self):
        r = self.raw()
        self.assertEqual(r.cmd("EHLO " + "x" * 600)[0], 500)        # over 512 octets
        self.assertEqual(r.cmd("\x01\x02\xff\xfe garbage")[0], 502)
        r.send(b"NOOP\x00\r\n")
        self.assertEqual(r.reply()[0], 500)
        r.send(os.urandom(2000).replace(b"\n", b"") + b"\r\n")
        code, _ = r.reply()
        self.assertIn(code, (500, 502))
        self.assertEqual(r.cmd("NOOP")[0], 250)


class RelayTest(SmtpTestBase):
    def test_relay_denied_and_address_tricks(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<s@client.test>")
        denied = ["<a@denied.test>", "<a%denied.test@denied.test>",
                  "<@allowed.test:a@denied.test>", "<@allowed.test,@x.test:a@denied.test>",
                  '<"a@allowed.test"@denied.test>', "<allowed.test!a@denied.test>",
                  "<a@allowed.test.denied.test>", "<a@wild.test>"]
        for rcpt in denied:
            code, text = r.cmd("RCPT TO:%s" % rcpt)
            self.assertEqual(code, 550, "%s: %s" % (rcpt, text))
            self.assertIn("5.7.1", text)
        allowed = ["<a@allowed.test>", "<a%denied.test@allowed.test>", "<denied.test!a@allowed.test>",
                   '<"a@denied.test"@allowed.test>', "<@denied.test:a@allowed.test>", "<A@ALLOWED.TEST>"]
        for rcpt in allowed:
            code, text = r.cmd("RCPT TO:%s" % rcpt)
            self.assertEqual(code, 250, "%s: %s" % (rcpt, text))
        rejectlog = os.path.join(self.d.workdir, "var/log/rejectlog.ec")
        pattern = re.compile(r'R="127\.0\.0\.1:\d+".*P="rcptto".*E=550')
        harness.wait_until(lambda: pattern.search(harness._read(rejectlog)), 10,
                           what="a rejectlog record of the relay denial")


class RelayHostsTest(SmtpTestBase):
    body = '  Peer "127.0.0.0/8" { Open_Relay = true }\n'

    def test_peer_open_relay(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<s@client.test>")
        self.assertEqual(r.cmd("RCPT TO:<a@anywhere.test>")[0], 250)


class LimitsTest(SmtpTestBase):
    body = """  Max_Message_Size = 2000
  Max_Recipients_Per_Message = 2
  Max_Receptions_Per_Connection = 2
  Peer_Sessions = 3
  Idle_Time = 2
  Require_EHLO = true
"""

    def test_size_recipients_receptions(self):
        r = self.raw()
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test>")[0], 503)       # Require_EHLO
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test> SIZE=5000")[0], 552)
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test> SIZE=100")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<a@allowed.test>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<b@allowed.test>")[0], 250)
        self.assertEqual(r.cmd("RCPT TO:<c@allowed.test>")[0], 452)
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send("Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 100 + ".\r\n")
        self.assertEqual(r.reply()[0], 552)                                  # over 2000 bytes
        for i in range(2):
            r.cmd("MAIL FROM:<s@client.test>")
            r.cmd("RCPT TO:<a@allowed.test>")
            r.cmd("DATA")
            r.send("Subject: %d\r\n\r\nok\r\n.\r\n" % i)
            self.assertEqual(r.reply()[0], 250)
        code, text = r.cmd("MAIL FROM:<s@client.test>")
        self.assertEqual(code, 421, text)                                    # receptions
        self.assertTrue(r.closed())

    def test_sessions_per_peer(self):
        clients = [self.raw() for _ in range(3)]
        extra = Raw(self.port)
        self.addCleanup(extra.close)
        code, text = extra.reply()
        self.assertEqual(code, 421, text)
        self.assertIn("4.4.5", text)
        clients[0].cmd("QUIT")
        time.sleep(0.3)
        self.raw()                                                           # room again

    def test_idle_timeout(self):
        r = self.raw()
        code, text = r.reply()
        self.assertEqual(code, 421, text)
        self.assertIn("4.4.2", text)


class SmugglingTest(SmtpTestBase):
    """None of the bare-CR/LF end-of-data variants ends DATA; at most one message results."""

    VARIANTS = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\r.\r\n", b"\r\n.\n",
                b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n"]

    def smuggle(self, variant):
        r = self.raw()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<s@client.test>")
        r.cmd("RCPT TO:<a@allowed.test>")
        self.assertEqual(r.cmd("DATA")[0], 354)
        r.send(b"Subject: outer\r\n\r\nbody" + variant +
               b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<victim@allowed.test>\r\nDATA\r\n"
               b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
        code, text = r.reply()
        # Exactly one reply for the whole thing: the smuggled commands were data.
        # Had they run, their replies (2.1.0, 2.1.5, 354, ...) would come next.
        ncode, ntext = r.cmd("NOOP")
        self.assertEqual((ncode, "2.0.0" in ntext), (250, True),
                         "%r: a smuggled command was executed: %s" % (variant, ntext))
        r.sock.settimeout(0.3)
        try:
            extra = r.sock.recv(4096)
        except socket.timeout:
            extra = b""
        self.assertEqual(extra, b"", "%r: unexpected replies %r" % (variant, extra))
        return code, text

    def test_variants_rejected(self):
        for v in self.VARIANTS:
            code, text = self.smuggle(v)
            self.assertIn(code, (250, 550), "%r: %s" % (v, text))
        recs = self.receptions()
        time.sleep(0.5)
        recs = self.receptions()
        self.assertLessEqual(len(recs), len(self.VARIANTS), recs)
        self.assertFalse([l for l in recs if "victim" in l], "smuggled recipient accepted")


class SmugglingNormalizeTest(SmugglingTest):
    body = "  Bare_Line_Feed = normalize\n"

    def test_variants_rejected(self):
        for v in self.VARIANTS:
            code, text = self.smuggle(v)
            self.assertIn(code, (250, 550), "%r: %s" % (v, text))
        recs = self.receptions()
        self.assertFalse([l for l in recs if "victim" in l], "smuggled recipient accepted")


class ListenTest(unittest.TestCase):
    def test_reload_cannot_move_listeners(self):
        port = harness.free_port()
        d = harness.Daemon(listener(port))
        self.addCleanup(d.close)
        d.start()
        d.wait_log("started")
        mark = len(d.paniclog())
        d.write_conf(listener(harness.free_port()))
        d.reload()
        d.wait_log(r"reload refused.*Listen", since=mark)
        self.assertTrue(d.running())

    def test_bad_listen_address_is_a_config_error(self):
        r = harness.check(BASE + 'ESMTP_Listener { Listen "127.0.0.1:99999" { } }\n')
        self.assertNotEqual(r[0], 0)
        self.assertRegex(r[2], r":\d+:\d+: error: Listen: .*port")


if __name__ == "__main__":
    harness.main()
