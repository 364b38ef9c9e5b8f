"""test_faultsink_selftest.py: the fault sink (faultsink.py) does what impetus's outbound
tests rely on.

Driven with smtplib and raw sockets (no daemon): a normal ESMTP dialogue and its message
log (dot-unstuffing, pipelined input, parameters, bare LF), every fault type at a few
stages (4xx, 5xx, 421, garbage, partial, reset, stall), the body stage (reset and a stall
that stops reading), times counted across sessions, match by listen / rcpt / mail_from,
set_rules taking effect at the next connection, changed EHLO extensions and SIZE,
STARTTLS (when the openssl CLI is there), and the loopback-only guard.
"""

import os
import smtplib
import socket
import ssl
import struct
import subprocess
import sys
import time
import unittest

import harness
from faultsink import FaultSink, validate_rules

HERE = os.path.dirname(os.path.abspath(__file__))
STALL_S = 0.6   # seconds a client waits before it decides the server stalls

MSG = ("From: a@src.test\r\nTo: b@d1.test\r\nSubject: selftest\r\n\r\n"
       "line one\r\n.leading dot\r\n..two dots\r\nlast\r\n")


class Raw:
    """A raw SMTP client socket: send bytes, read replies (or whatever comes)."""

    def __init__(self, server, timeout=5.0):
        self.sock = socket.create_connection(server, timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        """One line (without CRLF); b"" at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                out, self.buf = self.buf, b""
                return out
            self.buf += chunk
        out, _, self.buf = self.buf.partition(b"\n")
        return out.rstrip(b"\r")

    def reply(self):
        """One whole (multi-line) reply as a list of str lines."""
        lines = []
        while True:
            line = self.line().decode()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def code(self):
        return int(self.reply()[-1][:3])

    def read_all(self, timeout):
        """Everything until EOF or timeout: (bytes, how) with how "eof", "timeout", "reset"."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return data, "eof"
                data += chunk
        except socket.timeout:
            return data, "timeout"
        except ConnectionResetError:
            return data, "reset"

    def local(self):
        host, port = self.sock.getsockname()[:2]
        return "%s:%d" % (host, port)

    def close(self):
        self.sock.close()


class FaultSinkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = FaultSink(["127.0.0.2", "127.0.0.3"])
        cls.sink.start()

    @classmethod
    def tearDownClass(cls):
        cls.sink.close()

    def setUp(self):
        self.sink.set_rules([])
        self.raws = []

    def tearDown(self):
        for r in self.raws:
            r.close()

    # --- helpers ------------------------------------------------------------------------

    def raw(self, address=None):
        r = Raw((address or self.sink.address, self.sink.port))
        self.raws.append(r)
        return r

    def session_of(self, local):
        """The session number of the connection from local ("127.0.0.1:PORT")."""
        return harness.wait_until(
            lambda: next((e["session"] for e in self.sink.events("connect")
                          if e["peer"] == local), None), 5, what="connect of %s" % local)

    def greet(self, r):
        self.assertEqual(r.code(), 220)
        r.send("EHLO client.test\r\n")
        self.assertEqual(r.code(), 250)

    def start_txn(self, r, rcpts=("b@d1.test",)):
        r.send("MAIL FROM:<a@src.test>\r\n")
        self.assertEqual(r.code(), 250)
        for rc in rcpts:
            r.send("RCPT TO:<%s>\r\n" % rc)
            self.assertEqual(r.code(), 250)

    def assert_stalled(self, r, session, expect=b""):
        data, how = r.read_all(STALL_S)
        self.assertEqual((data, how), (expect, "timeout"))
        r.close()
        reason = self.sink.wait_closed(session)
        self.assertIn("stall", reason)

    def messages_of(self, session):
        return [m for m in self.sink.messages() if m.session == session]

    # --- a normal server ----------------------------------------------------------------

    def test_smtplib_delivery_logged(self):
        with smtplib.SMTP(*self.sink.server, timeout=5) as s:
            code, text = s.ehlo("client.test")
            self.assertEqual(code, 250)
            for ext in ("pipelining", "8bitmime", "smtputf8", "dsn", "enhancedstatuscodes"):
                self.assertTrue(s.has_extn(ext), ext)
            self.assertEqual(s.esmtp_features["size"], "10485760")
            self.assertFalse(s.has_extn("starttls"))
            refused = s.sendmail("a@src.test", ["b@d1.test", "c@d2.test"], MSG,
                                 mail_options=["BODY=8BITMIME"],
                                 rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;b@d1.test"])
            self.assertEqual(refused, {})
        msgs = self.sink.wait_for(1)
        m = msgs[-1]
        self.assertEqual(m.mail_from, "a@src.test")
        self.assertEqual(m.rcpts, ["b@d1.test", "c@d2.test"])
        self.assertIn("BODY=8BITMIME", m.mail_params)
        self.assertIn("ORCPT=rfc822;b@d1.test", m.rcpt_params[0])
        self.assertEqual(m.data, MSG)  # smtplib dot-stuffs, the sink unstuffs
        self.assertEqual(m.size, len(m.data_bytes))
        self.assertEqual(m.listen, "127.0.0.2:%d" % self.sink.port)
        self.assertTrue(m.peer.startswith("127."))
        self.assertEqual(m.helo, "client.test")
        self.assertFalse(m.tls)
        self.assertFalse(m.bare_lf)
        self.assertEqual(m.subject, "selftest")
        t = self.sink.transcript(m.session)
        self.assertTrue(t[0].startswith("S: 220 mx.sink.test"), t)
        self.assertIn("C: QUIT", [x.upper() for x in t])

    def test_pipelined_input_in_one_write(self):
        r = self.raw()
        self.assertEqual(r.code(), 220)
        r.send("EHLO p.test\r\nMAIL FROM:<p@src.test> SIZE=100\r\nRCPT TO:<x@d1.test>\r\n"
               "RCPT TO:<y@d1.test>\r\nDATA\r\n")
        self.assertEqual([r.code() for _ in range(5)], [250, 250, 250, 250, 354])
        # The body, the dot and the next commands in one write.
        r.send("Subject: p\r\n\r\n..x\r\nbare\nend\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual([r.code() for _ in range(4)], [250, 250, 250, 221])
        session = self.session_of(r.local())
        m = self.messages_of(session)[0]
        self.assertEqual(m.data, "Subject: p\r\n\r\n.x\r\nbare\nend\r\n")
        self.assertTrue(m.bare_lf)
        self.assertEqual(m.mail_params, "SIZE=100")
        self.assertEqual(self.sink.wait_closed(session), "quit")

    def test_sequence_errors(self):
        r = self.raw()
        self.assertEqual(r.code(), 220)
        r.send("MAIL FROM:<a@src.test>\r\n")
        self.assertEqual(r.code(), 503)               # no EHLO yet
        r.send("HELO c.test\r\nRCPT TO:<b@d1.test>\r\n")
        self.assertEqual([r.code(), r.code()], [250, 503])
        r.send("MAIL FROM:<a@src.test>\r\nDATA\r\nBDAT 1 LAST\r\n")
        self.assertEqual([r.code(), r.code(), r.code()], [250, 554, 500])

    def test_stall_does_not_block_other_sessions(self):
        self.sink.set_rules([{"stage": "mail", "fault": "stall",
                              "match": {"mail_from": "slow@src.test"}}])
        stalled = self.raw()
        self.greet(stalled)
        stalled.send("MAIL FROM:<slow@src.test>\r\n")
        with smtplib.SMTP(*self.sink.server, timeout=5) as s:
            self.assertEqual(s.sendmail("fast@src.test", ["b@d1.test"], MSG), {})
        self.assertEqual(self.sink.wait_for(1)[-1].mail_from, "fast@src.test")
        self.assert_stalled(stalled, self.session_of(stalled.local()))

    # --- 4xx / 5xx at the stages ----------------------------------------------------------

    def test_4xx_5xx_at_stages(self):
        cases = [
            # rule, (command, expected code) steps after the greeting
            ({"stage": "ehlo", "fault": "4xx"}, [("EHLO c.test", 451)]),
            ({"stage": "mail", "fault": "5xx"}, [("MAIL FROM:<a@src.test>", 550),
                                                 ("RCPT TO:<b@d1.test>", 503)]),
            ({"stage": "rcpt_first", "fault": "5xx"},
             [("MAIL FROM:<a@src.test>", 250), ("RCPT TO:<b@d1.test>", 550),
              ("RCPT TO:<c@d1.test>", 250), ("DATA", 354)]),
            ({"stage": "rcpt_later", "fault": "4xx"},
             [("MAIL FROM:<a@src.test>", 250), ("RCPT TO:<b@d1.test>", 250),
              ("RCPT TO:<c@d1.test>", 451), ("RCPT TO:<d@d1.test>", 451)]),
            ({"stage": "data", "fault": "5xx"},
             [("MAIL FROM:<a@src.test>", 250), ("RCPT TO:<b@d1.test>", 250), ("DATA", 550),
              ("RSET", 250)]),
            ({"stage": "dot", "fault": "4xx"},
             [("MAIL FROM:<a@src.test>", 250), ("RCPT TO:<b@d1.test>", 250), ("DATA", 354),
              ("Subject: x\r\n\r\nbody\r\n.", 451)]),
            ({"stage": "quit", "fault": "5xx"}, [("QUIT", 550), ("NOOP", 250)]),
        ]
        for rule, steps in cases:
            with self.subTest(rule=rule):
                self.sink.set_rules([rule])
                r = self.raw()
                self.assertEqual(r.code(), 220)
                if rule["stage"] != "ehlo":
                    r.send("EHLO c.test\r\n")
                    self.assertEqual(r.code(), 250)
                for cmd, want in steps:
                    r.send(cmd + "\r\n")
                    lines = r.reply()
                    self.assertEqual(int(lines[-1][:3]), want, (cmd, lines))
                    if want in (451, 550):
                        status = "4.3.0" if want == 451 else (
                            "5.1.1" if rule["stage"].startswith("rcpt") else "5.0.0")
                        self.assertEqual(lines[-1].split()[1], status, lines)
                session = self.session_of(r.local())
                faults = self.sink.events("fault", session)
                self.assertEqual([f["stage"] for f in faults][:1], [rule["stage"]])
                self.assertEqual(self.messages_of(session), [])
                r.close()

    def test_banner_5xx_then_only_quit(self):
        self.sink.set_rules([{"stage": "banner", "fault": "5xx"}])
        r = self.raw()
        self.assertEqual(r.reply(), ["554 5.0.0 Service refused (faultsink)"])
        r.send("EHLO c.test\r\nQUIT\r\n")
        self.assertEqual([r.code(), r.code()], [503, 221])

    def test_custom_and_multiline_text(self):
        self.sink.set_rules([
            {"stage": "rcpt_first", "fault": "4xx", "text": "452 4.2.2 Mailbox full"},
            {"stage": "mail", "fault": "5xx", "text": "first line\nsecond line"}])
        r = self.raw()
        self.greet(r)
        r.send("MAIL FROM:<a@src.test>\r\n")
        self.assertEqual(r.reply(), ["550-5.0.0 first line", "550 second line"])
        self.sink.set_rules([{"stage": "rcpt_first", "fault": "4xx",
                              "text": "452 4.2.2 Mailbox full"}])
        r = self.raw()
        self.greet(r)
        r.send("MAIL FROM:<a@src.test>\r\nRCPT TO:<b@d1.test>\r\n")
        self.assertEqual(r.code(), 250)
        self.assertEqual(r.reply(), ["452 4.2.2 Mailbox full"])

    # --- faults that end or freeze the session ------------------------------------------

    def test_421_closes(self):
        for stage in ("banner", "mail", "dot"):
            with self.subTest(stage=stage):
                self.sink.set_rules([{"stage": stage, "fault": "421"}])
                r = self.raw()
                if stage != "banner":
                    self.greet(r)
                    r.send("MAIL FROM:<a@src.test>\r\n")
                if stage == "dot":
                    self.assertEqual(r.code(), 250)
                    r.send("RCPT TO:<b@d1.test>\r\nDATA\r\n")
                    self.assertEqual([r.code(), r.code()], [250, 354])
                    r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                self.assertEqual(r.reply(), ["421 4.3.2 Service shutting down (faultsink)"])
                self.assertEqual(r.read_all(5), (b"", "eof"))
                self.assertEqual(self.sink.wait_closed(self.session_of(r.local())), "421")

    def test_garbage(self):
        for stage in ("banner", "rcpt_first", "dot"):
            with self.subTest(stage=stage):
                self.sink.set_rules([{"stage": stage, "fault": "garbage"}])
                r = self.raw()
                if stage != "banner":
                    self.greet(r)
                    r.send("MAIL FROM:<a@src.test>\r\nRCPT TO:<b@d1.test>\r\n")
                    self.assertEqual(r.code(), 250)
                if stage == "dot":
                    self.assertEqual(r.code(), 250)
                    r.send("DATA\r\n")
                    self.assertEqual(r.code(), 354)
                    r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                self.assertEqual(r.line(), b"HELLO THERE")
                session = self.session_of(r.local())
                self.assertEqual(self.messages_of(session), [])
                if stage == "dot":
                    rejected = self.sink.events("rejected_message", session)
                    self.assertEqual(rejected[0]["fault"], "garbage")

    def test_partial(self):
        for stage in ("banner", "ehlo", "dot"):
            with self.subTest(stage=stage):
                self.sink.set_rules([{"stage": stage, "fault": "partial"}])
                r = self.raw()
                if stage != "banner":
                    self.assertEqual(r.code(), 220)
                    r.send("EHLO c.test\r\n")
                if stage == "dot":
                    self.sink.set_rules([{"stage": stage, "fault": "partial"}])
                    self.assertEqual(r.code(), 250)
                    self.start_txn(r)
                    r.send("DATA\r\n")
                    self.assertEqual(r.code(), 354)
                    r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                self.assert_stalled(r, self.session_of(r.local()), expect=b"25")

    def test_reset(self):
        for stage in ("banner", "rcpt_first", "data", "dot"):
            with self.subTest(stage=stage):
                self.sink.set_rules([{"stage": stage, "fault": "reset"}])
                try:
                    r = self.raw()
                except ConnectionResetError:  # the reset came before connect() returned
                    self.assertEqual(stage, "banner")
                    continue
                if stage != "banner":
                    self.greet(r)
                    r.send("MAIL FROM:<a@src.test>\r\nRCPT TO:<b@d1.test>\r\n")
                    self.assertEqual(r.code(), 250)
                if stage in ("data", "dot"):
                    self.assertEqual(r.code(), 250)
                    r.send("DATA\r\n")
                if stage == "dot":
                    self.assertEqual(r.code(), 354)
                    r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                self.assertEqual(r.read_all(5), (b"", "reset"))
                self.assertEqual(self.sink.wait_closed(self.session_of(r.local())), "reset")

    def test_stall(self):
        for stage in ("banner", "ehlo", "rcpt_later", "dot", "quit"):
            with self.subTest(stage=stage):
                self.sink.set_rules([{"stage": stage, "fault": "stall"}])
                r = self.raw()
                if stage != "banner":
                    self.assertEqual(r.code(), 220)
                    r.send("EHLO c.test\r\n")
                if stage in ("rcpt_later", "dot", "quit"):
                    self.assertEqual(r.code(), 250)
                if stage == "rcpt_later":
                    self.start_txn(r)
                    r.send("RCPT TO:<c@d1.test>\r\n")
                if stage == "dot":
                    self.start_txn(r)
                    r.send("DATA\r\n")
                    self.assertEqual(r.code(), 354)
                    r.send("Subject: x\r\n\r\nbody\r\n.\r\n")
                if stage == "quit":
                    r.send("QUIT\r\n")
                session = self.session_of(r.local())
                r.send("NOOP\r\n")  # input during a stall is read and ignored
                self.assert_stalled(r, session)
                self.assertTrue(self.sink.events("ignored", session) or stage == "banner")

    # --- the body stage -----------------------------------------------------------------

    def test_body_reset_after_first_bytes(self):
        self.sink.set_rules([{"stage": "body", "fault": "reset"}])
        r = self.raw()
        self.greet(r)
        self.start_txn(r)
        r.send("DATA\r\n")
        self.assertEqual(r.code(), 354)
        r.send("Subject: first line\r\n")
        self.assertEqual(r.read_all(5), (b"", "reset"))
        session = self.session_of(r.local())
        self.assertEqual(self.sink.wait_closed(session), "reset")
        self.assertEqual([e["stage"] for e in self.sink.events("fault", session)], ["body"])

    def test_body_stall_stops_reading(self):
        self.sink.set_rules([{"stage": "body", "fault": "stall"}])
        r = self.raw()
        self.greet(r)
        self.start_txn(r)
        r.send("DATA\r\n")
        self.assertEqual(r.code(), 354)
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        r.sock.settimeout(STALL_S)
        chunk = b"x" * 998 + b"\r\n"
        block = chunk * 1000       # about 1 MB
        sent = 0
        with self.assertRaises(socket.timeout):
            while sent < 512 * len(block):   # far beyond any socket buffer
                sent += r.sock.send(block)
        session = self.session_of(r.local())
        self.assertEqual(self.sink.events("stall", session)[0]["stage"], "body")
        # A plain close would queue the FIN behind the unsent data, which the sink never
        # reads: give up with a reset, which the sink does see.
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        r.close()
        self.assertIn("stall", self.sink.wait_closed(session))

    def test_body_5xx_early_reply(self):
        self.sink.set_rules([{"stage": "body", "fault": "5xx", "text": "552 5.3.4 Too big"}])
        r = self.raw()
        self.greet(r)
        self.start_txn(r)
        r.send("DATA\r\n")
        self.assertEqual(r.code(), 354)
        r.send("Subject: x\r\n")
        self.assertEqual(r.reply(), ["552 5.3.4 Too big"])
        r.send("more\r\n.\r\nNOOP\r\n")        # the dot gets no second reply
        self.assertEqual(r.reply(), ["250 2.0.0 Ok"])
        self.assertEqual(self.messages_of(self.session_of(r.local())), [])

    # --- rules: times, match, set_rules -------------------------------------------------

    def test_times_across_sessions(self):
        self.sink.set_rules([{"stage": "mail", "fault": "4xx", "times": 2}])
        codes = []
        for _ in range(4):
            r = self.raw()
            self.greet(r)
            r.send("MAIL FROM:<a@src.test>\r\n")
            codes.append(r.code())
            r.close()
        self.assertEqual(codes, [451, 451, 250, 250])
        # set_rules starts the counts again, even for the same rules.
        self.sink.set_rules([{"stage": "mail", "fault": "4xx", "times": 2}])
        r = self.raw()
        self.greet(r)
        r.send("MAIL FROM:<a@src.test>\r\n")
        self.assertEqual(r.code(), 451)

    def test_match_listen_one_process_two_mxs(self):
        self.sink.set_rules([{"stage": "mail", "fault": "5xx", "match": {"listen": "127.0.0.3"}}])
        codes = {}
        for addr in ("127.0.0.2", "127.0.0.3"):
            r = self.raw(addr)
            self.greet(r)
            r.send("MAIL FROM:<a@src.test>\r\n")
            codes[addr] = r.code()
        self.assertEqual(codes, {"127.0.0.2": 250, "127.0.0.3": 550})

    def test_match_rcpt_and_mail_from(self):
        self.sink.set_rules([
            {"stage": "rcpt_first", "fault": "5xx", "match": {"rcpt": "@d2.test"}},
            {"stage": "rcpt_later", "fault": "5xx", "match": {"rcpt": "Exact@D1.test"}},
            {"stage": "dot", "fault": "4xx", "match": {"rcpt": "@d3.test"}},
            {"stage": "mail", "fault": "5xx", "match": {"mail_from": ""}}])
        with smtplib.SMTP(*self.sink.server, timeout=5) as s:
            refused = s.sendmail("a@src.test", ["x@d2.test", "exact@d1.test", "ok@d1.test"], MSG)
            self.assertEqual(sorted(refused), ["exact@d1.test", "x@d2.test"])
            with self.assertRaises(smtplib.SMTPDataError):
                s.sendmail("a@src.test", ["ok@d1.test", "y@d3.test"], MSG)
            s.rset()
            with self.assertRaises(smtplib.SMTPSenderRefused):
                s.sendmail("", ["ok@d1.test"], MSG)
        m = self.sink.wait_for(1)[-1]
        self.assertEqual(m.rcpts, ["ok@d1.test"])

    def test_set_rules_applies_at_next_connection(self):
        first = self.raw()
        self.greet(first)
        self.sink.set_rules([{"stage": "mail", "fault": "4xx"}])
        second = self.raw()
        self.greet(second)
        first.send("MAIL FROM:<a@src.test>\r\n")
        second.send("MAIL FROM:<a@src.test>\r\n")
        self.assertEqual((first.code(), second.code()), (250, 451))
        self.assertGreaterEqual(self.sink.sessions(), 2)

    def test_bad_rules_rejected(self):
        for rules in ([{"stage": "nope", "fault": "4xx"}], [{"stage": "mail", "fault": "x"}],
                      [{"stage": "mail", "fault": "4xx", "times": -1}],
                      [{"stage": "mail", "fault": "4xx", "match": {"helo": "x"}}],
                      [{"stage": "mail", "fault": "4xx", "match": {"listen": "10.1.1.1:25"}}],
                      [{"stage": "mail", "fault": "4xx", "size": 5}], {"stage": "mail"}):
            with self.subTest(rules=rules):
                with self.assertRaises(ValueError):
                    self.sink.set_rules(rules) if isinstance(rules, list) else validate_rules(rules)

    # --- EHLO extensions, SIZE, STARTTLS -------------------------------------------------

    def test_ehlo_extensions_and_size(self):
        self.sink.set_rules([{"stage": "ehlo", "fault": "none", "size": 1000,
                              "without": ["PIPELINING", "SMTPUTF8"], "with": ["CHUNKING"]}])
        r = self.raw()
        self.assertEqual(r.code(), 220)
        r.send("EHLO c.test\r\n")
        ext = [l[4:] for l in r.reply()[1:]]
        self.assertEqual(ext, ["SIZE 1000", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES", "CHUNKING"])
        r.send("MAIL FROM:<a@src.test> SIZE=2000\r\n")
        self.assertEqual(r.reply(), ["552 5.3.4 Message size exceeds fixed limit"])
        self.start_txn(r)
        r.send("DATA\r\n")
        self.assertEqual(r.code(), 354)
        r.send("Subject: big\r\n\r\n" + ("y" * 100 + "\r\n") * 20 + ".\r\n")
        self.assertEqual(r.code(), 552)
        self.assertEqual(self.messages_of(self.session_of(r.local())), [])

    def test_delay_none(self):
        self.sink.set_rules([{"stage": "mail", "fault": "none", "delay": 0.3}])
        r = self.raw()
        self.greet(r)
        t0 = time.monotonic()
        r.send("MAIL FROM:<a@src.test>\r\n")
        self.assertEqual(r.code(), 250)
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        openssl = harness.find_tool("openssl")
        if openssl is None:
            raise unittest.SkipTest("openssl CLI not found")
        cls.tmp = harness.TempDir(prefix="impetus-faultsink-tls-")
        cert, key = cls.tmp.join("cert.pem"), cls.tmp.join("key.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=mx.sink.test"],
                       check=True, capture_output=True, timeout=60)
        cls.sink = FaultSink("127.0.0.4", tls_cert=cert, tls_key=key)
        cls.sink.start()

    @classmethod
    def tearDownClass(cls):
        cls.sink.close()
        cls.tmp.close()

    def context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def test_starttls_delivery(self):
        self.sink.set_rules([])
        with smtplib.SMTP(*self.sink.server, timeout=5) as s:
            s.ehlo("c.test")
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=self.context())
            s.ehlo("c.test")
            self.assertFalse(s.has_extn("starttls"))
            s.sendmail("a@src.test", ["b@d1.test"], MSG)
        m = self.sink.wait_for(1)[-1]
        self.assertTrue(m.tls)
        self.assertTrue(self.sink.events("tls", m.session))

    def test_starttls_4xx(self):
        self.sink.set_rules([{"stage": "starttls", "fault": "4xx",
                              "text": "454 4.7.0 TLS not available"}])
        with smtplib.SMTP(*self.sink.server, timeout=5) as s:
            s.ehlo("c.test")
            with self.assertRaises(smtplib.SMTPResponseException) as cm:
                s.starttls(context=self.context())
            self.assertEqual(cm.exception.smtp_code, 454)

    def test_reset_after_tls(self):
        self.sink.set_rules([{"stage": "mail", "fault": "reset"}])
        with smtplib.SMTP(*self.sink.server, timeout=5) as s:
            s.ehlo("c.test")
            s.starttls(context=self.context())
            s.ehlo("c.test")
            with self.assertRaises((smtplib.SMTPServerDisconnected, ConnectionResetError)):
                s.mail("a@src.test")
            s.close()


class GuardTest(unittest.TestCase):
    def test_script_refuses_non_loopback(self):
        with harness.TempDir() as tmp:
            rules = tmp.join("rules.json")
            with open(rules, "w") as f:
                f.write("[]")
            p = subprocess.run([sys.executable, os.path.join(HERE, "faultsink.py"), "--listen",
                                "192.0.2.1:2525", "--rules", rules, "--log", tmp.join("log")],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("loopback", p.stderr)
            self.assertNotIn("ready", p.stdout)

    def test_fixture_refuses_non_loopback(self):
        with self.assertRaises(ValueError):
            FaultSink("10.0.0.1")


if __name__ == "__main__":
    harness.main()
