"""test_smtp_tls_auth.py: STARTTLS (RFC 3207) and AUTH PLAIN/LOGIN (RFC 4954) of the real daemon.

A self-signed certificate (CN mx.impetus.test) and a users file (`openssl passwd -6`) are made
with the openssl CLI in each test's temp dir. Clients: smtplib (starttls, auth), swaks --tls
--auth, and a raw socket for what smtplib will not do: the STARTTLS pipelining injection
(CVE-2011-0411 class), SASL cancels, bad base64, counted failures.
"""

import base64
import os
import re
import smtplib
import socket
import ssl
import subprocess
import time
import unittest

import harness
from test_smtp import BASE, Raw

IMPETUSD = harness.require_impetusd()
OPENSSL = harness.find_tool("openssl")

USER, PASSWORD = "alice", "secret"


def make_credentials(workdir):
    """cert.pem, key.pem and users in workdir; their paths."""
    cert, key, users = (os.path.join(workdir, n) for n in ("cert.pem", "key.pem", "users"))
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=mx.impetus.test"],
                   check=True, capture_output=True, timeout=60)
    h = subprocess.run([OPENSSL, "passwd", "-6", PASSWORD], check=True, capture_output=True,
                       text=True, timeout=60).stdout.strip()
    with open(users, "w") as f:
        f.write("# test users\n%s:%s\nbob:%s\n" % (USER, h, h))
    return cert, key, users


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user=USER, password=PASSWORD, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


class TlsAuthBase(unittest.TestCase):
    body = ""           # inside ESMTP_Listener
    peer = ""           # a Peer "127.0.0.1/32" { … } body, when set

    def setUp(self):
        self.port = harness.free_port()
        self.d = harness.Daemon("")
        self.addCleanup(self.d.close)
        self.cert, self.key, self.users = make_credentials(self.d.workdir)
        peer = ('  Peer "127.0.0.1/32" {\n%s  }\n' % self.peer) if self.peer else ""
        self.d.write_conf(BASE + """
ESMTP_Listener {
  Banner_Hostname = "mx.impetus.test"
  Relay_Domains = ( "allowed.test" )
  TLS_Certificate = "%s"
  TLS_Key = "%s"
  Auth_Users_File = "%s"
  Auth_Max_Failures = 2
%s%s  Listen "127.0.0.1:%d" { }
}
""" % (self.cert, self.key, self.users, self.body, peer, self.port))
        self.d.start()
        self.d.wait_log("started")
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.port)), 10, what="listener up")

    def raw(self):
        r = Raw(self.port)
        self.addCleanup(r.close)
        code, text = r.reply()
        self.assertEqual(code, 220, text)
        return r

    def tls_raw(self):
        """A raw client after EHLO + STARTTLS + handshake (nothing sent inside TLS yet)."""
        r = self.raw()
        code, text = r.cmd("EHLO client.test")
        self.assertIn("STARTTLS", text)
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        self.assertEqual(r.buf, b"")
        r.sock = client_context().wrap_socket(r.sock, server_hostname="mx.impetus.test")
        return r

    def no_more_replies(self, r, wait=0.5):
        r.sock.settimeout(wait)
        try:
            extra = r.sock.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            extra = b""
        r.sock.settimeout(10)
        return r.buf + extra

    def spool_show(self, batch):
        tool = os.path.join(os.path.dirname(IMPETUSD), "impetus-spool")
        out = subprocess.run([tool, "show", batch, os.path.join(self.d.workdir, "var/spool")],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return out.stdout

    def rejectlog(self):
        return harness._read(os.path.join(self.d.workdir, "var/log/rejectlog.ec"))


class StartTlsTest(TlsAuthBase):
    def test_advertising_and_state_reset(self):
        r = self.raw()
        code, text = r.cmd("EHLO client.test")
        self.assertIn("STARTTLS", text)
        self.assertNotIn("AUTH", text)                      # only after TLS
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test>")[0], 250)
        self.assertEqual(r.cmd("STARTTLS")[0], 503)         # not inside a transaction
        self.assertEqual(r.cmd("RSET")[0], 250)
        self.assertEqual(r.cmd("STARTTLS x")[0], 501)
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        r.sock = client_context().wrap_socket(r.sock, server_hostname="mx.impetus.test")
        self.assertEqual(r.sock.getpeercert(binary_form=True) is not None, True)
        # A fresh session: the earlier EHLO is forgotten (Require_EHLO-free MAIL still works,
        # but AUTH needs EHLO again).
        self.assertEqual(r.cmd("AUTH PLAIN " + plain())[0], 503)
        code, text = r.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", text)
        self.assertIn("AUTH PLAIN LOGIN", text)
        self.assertEqual(r.cmd("STARTTLS")[0], 503)         # already active

    def test_pipelined_commands_after_starttls_are_discarded(self):
        for injected in ("RSET\r\n", "MAIL FROM:<evil@client.test>\r\n",
                         "NOOP\r\nNOOP\r\nRSET\r\n"):
            r = self.raw()
            r.cmd("EHLO client.test")
            r.send("STARTTLS\r\n" + injected)              # one write
            code, text = r.reply()
            self.assertEqual(code, 220, text)
            # Nothing more in plain text …
            self.assertEqual(self.no_more_replies(r), b"", injected)
            r.buf = b""
            r.sock = client_context().wrap_socket(r.sock, server_hostname="mx.impetus.test")
            # … nor inside TLS: the injected commands were never executed.
            self.assertEqual(self.no_more_replies(r), b"", injected)
            r.cmd("EHLO client.test")
            code, text = r.cmd("RCPT TO:<a@allowed.test>")
            self.assertEqual(code, 503, "%r: a transaction survived STARTTLS: %s" % (injected, text))
            code, text = r.cmd("NOOP")
            self.assertEqual(code, 250, text)
            self.assertEqual(self.no_more_replies(r, 0.2), b"", injected)
            r.cmd("QUIT")

    def test_handshake_failure_is_logged_and_closed(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        self.assertEqual(r.cmd("STARTTLS")[0], 220)
        r.send(b"this is not a TLS ClientHello\r\n" * 4)
        self.assertTrue(r.closed())
        self.d.wait_log(r"TLS handshake failed")

    def test_message_over_tls_is_esmtps(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as c:
            c.ehlo("client.test")
            c.starttls(context=client_context())
            c.ehlo("client.test")
            c.mail("s@client.test")
            c.rcpt("a@allowed.test")
            code, text = c.data("Subject: tls\r\n\r\nover tls\r\n")
            self.assertEqual(code, 250, text)
        shown = self.spool_show(re.search(r"queued as (\S+)", text.decode()).group(1))
        self.assertRegex(shown, r"with ESMTPS id")


class AuthTest(TlsAuthBase):
    def test_smtplib_plain_and_login_then_relay(self):
        for mech, initial in (("PLAIN", True), ("PLAIN", False), ("LOGIN", True),
                              ("LOGIN", False)):
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as c:
                c.ehlo("client.test")
                c.starttls(context=client_context())
                c.ehlo("client.test")
                self.assertIn("PLAIN", c.esmtp_features["auth"])
                c.user, c.password = USER, PASSWORD
                code, text = c.auth(mech, getattr(c, "auth_" + mech.lower()),
                                    initial_response_ok=initial)
                self.assertEqual(code, 235, "%s %s: %s" % (mech, initial, text))
                c.mail("s@client.test")
                code, text = c.rcpt("x@denied.test")       # authenticated: may relay
                self.assertEqual(code, 250, text)
                code, text = c.data("Subject: relayed\r\n\r\nauthenticated\r\n")
                self.assertEqual(code, 250, text)
        shown = self.spool_show(re.search(r"queued as (\S+)", text.decode()).group(1))
        self.assertRegex(shown, r"with ESMTPSA id")
        self.assertNotIn(PASSWORD, shown)

    def test_unauthenticated_relay_denied(self):
        r = self.tls_raw()
        r.cmd("EHLO client.test")
        r.cmd("MAIL FROM:<s@client.test>")
        code, text = r.cmd("RCPT TO:<x@denied.test>")
        self.assertEqual(code, 550, text)
        self.assertIn("5.7.1", text)
        self.assertEqual(r.cmd("RCPT TO:<x@allowed.test>")[0], 250)

    def test_swaks(self):
        harness.skip_unless("swaks")
        for mech in ("PLAIN", "LOGIN"):
            out = subprocess.run([harness.find_tool("swaks"), "--server",
                                  "127.0.0.1:%d" % self.port, "--tls", "--auth", mech,
                                  "--auth-user", USER, "--auth-password", PASSWORD,
                                  "--to", "z@denied.test", "--from", "s@client.test",
                                  "--h-Subject", "swaks " + mech, "--body", "from swaks"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("235 2.7.0", out.stdout)
            self.assertRegex(out.stdout, r"250 2\.0\.0 Ok: queued as")

    def test_auth_refused_before_tls(self):
        r = self.raw()
        r.cmd("EHLO client.test")
        code, text = r.cmd("AUTH PLAIN " + plain())
        self.assertEqual(code, 538, text)
        self.assertIn("5.7.11", text)
        harness.wait_until(lambda: re.search(r'P="auth".*E=538', self.rejectlog()), 10,
                           what="a rejectlog record in phase auth")

    def test_protocol_errors(self):
        r = self.tls_raw()
        self.assertEqual(r.cmd("AUTH PLAIN " + plain())[0], 503)     # EHLO first
        r.cmd("EHLO client.test")
        code, text = r.cmd("AUTH CRAM-MD5")
        self.assertEqual((code, "5.5.4" in text), (504, True), text)
        code, text = r.cmd("AUTH PLAIN not*base64")
        self.assertEqual((code, "5.5.2" in text), (501, True), text)
        self.assertEqual(r.cmd("AUTH PLAIN")[0], 334)
        code, text = r.cmd("*")
        self.assertEqual((code, "5.7.0" in text), (501, True), text)
        self.assertEqual(r.cmd("AUTH LOGIN")[0], 334)
        code, text = r.cmd("@@@@")
        self.assertEqual((code, "5.5.2" in text), (501, True), text)
        code, text = r.cmd("AUTH PLAIN =")                           # empty response
        self.assertEqual(code, 501, text)
        code, text = r.cmd("AUTH PLAIN " + plain(authzid="bob"))     # act as someone else
        self.assertEqual(code, 501, text)
        self.assertEqual(r.cmd("MAIL FROM:<s@client.test>")[0], 250)
        code, text = r.cmd("AUTH PLAIN " + plain())                  # inside a transaction
        self.assertEqual(code, 503, text)
        self.assertEqual(r.cmd("RSET")[0], 250)
        # LOGIN with the user name as initial response; the password as the next line.
        code, text = r.cmd("AUTH LOGIN " + b64(USER))
        self.assertEqual((code, text), (334, "334 UGFzc3dvcmQ6"))
        code, text = r.cmd(b64(PASSWORD))
        self.assertEqual(code, 235, text)
        self.assertIn("2.7.0", text)
        code, text = r.cmd("AUTH PLAIN " + plain())                  # twice
        self.assertEqual((code, "5.5.1" in text), (503, True), text)

    def test_wrong_password_delay_and_close(self):
        r = self.tls_raw()
        r.cmd("EHLO client.test")
        t0 = time.monotonic()
        code, text = r.cmd("AUTH PLAIN " + plain(password="wrong"))
        self.assertEqual((code, "5.7.8" in text), (535, True), text)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)          # 1 s for the first
        self.assertEqual(r.cmd("NOOP")[0], 250)                      # the session goes on
        t0 = time.monotonic()
        self.assertEqual(r.cmd("AUTH LOGIN")[0], 334)
        self.assertEqual(r.cmd(b64("nosuchuser"))[0], 334)
        code, text = r.cmd(b64(PASSWORD))
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)          # 2 s for the second
        self.assertEqual((code, "4.7.0" in text), (421, True), text)  # Auth_Max_Failures = 2
        self.assertTrue(r.closed())
        harness.wait_until(lambda: re.search(r'P="auth".*E=535', self.rejectlog()), 10,
                           what="a rejectlog record of the failure")
        self.assertNotIn("wrong", self.rejectlog())
        self.assertNotIn("wrong", self.d.paniclog())

    def test_other_sessions_are_not_delayed(self):
        r = self.tls_raw()
        r.cmd("EHLO client.test")
        r.send("AUTH PLAIN %s\r\n" % plain(password="wrong"))
        t0 = time.monotonic()
        other = self.raw()
        self.assertEqual(other.cmd("NOOP")[0], 250)
        self.assertLess(time.monotonic() - t0, 0.5)                  # the loop was not blocked
        self.assertEqual(r.reply()[0], 535)


class PeerFailureLimitTest(TlsAuthBase):
    body = "  Auth_Peer_Max_Failures = 2\n  Auth_Failure_Window = 60\n"

    def test_failures_counted_across_sessions(self):
        for _ in range(2):
            r = self.tls_raw()
            r.cmd("EHLO client.test")
            self.assertEqual(r.cmd("AUTH PLAIN " + plain(password="wrong"))[0], 535)
            r.cmd("QUIT")
        r = self.tls_raw()
        r.cmd("EHLO client.test")
        code, text = r.cmd("AUTH PLAIN " + plain())       # even the right password
        self.assertEqual((code, "4.7.0" in text), (421, True), text)
        self.assertTrue(r.closed())


class AuthWithoutTlsTest(TlsAuthBase):
    peer = "    Auth_Without_TLS = true\n"

    def test_plain_text_auth_for_the_peer(self):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as c:
            c.ehlo("client.test")
            self.assertTrue(c.has_extn("auth"))
            code, text = c.login(USER, PASSWORD)
            self.assertEqual(code, 235, text)
            refused = c.sendmail("s@client.test", ["x@denied.test"], "Subject: a\r\n\r\nb\r\n")
            self.assertEqual(refused, {})


class ConfigCheckTest(unittest.TestCase):
    def check(self, listener_body):
        with harness.TempDir() as tmp:
            cert, key, users = make_credentials(tmp.path)
            text = BASE + """
ESMTP_Listener {
  TLS_Certificate = "%s"
  TLS_Key = "%s"
  Auth_Users_File = "%s"
%s
  Listen "127.0.0.1:%d" { }
}
""" % (cert, key, users, listener_body, harness.free_port())
            return harness.check(text, workdir=tmp.path)

    def test_good_configuration(self):
        r = self.check("")
        self.assertEqual(r.rc, 0, r.stdout + r.stderr)

    def assert_refused(self, r, *needles):
        self.assertNotEqual(r.rc, 0, r.stdout + r.stderr)
        out = r.stdout + r.stderr
        self.assertRegex(out, re.escape(r.conf_path) + r":\d+:\d+")
        for n in needles:
            self.assertIn(n, out)

    def test_bad_certificate_path(self):
        self.assert_refused(self.check('  Listen "127.0.0.1:1" { TLS_Certificate = "/nonexistent/c.pem" }'),
                            "TLS_Certificate", "/nonexistent/c.pem")

    def test_not_a_certificate(self):
        self.assert_refused(self.check('  Peer "10.0.0.0/8" { TLS_Certificate = "%s" }'
                                       % IMPETUSD), "TLS_Certificate", "no PEM certificate")

    def test_bad_key_and_users_file(self):
        self.assert_refused(self.check('  Peer "10.0.0.0/8" { TLS_Key = "/nonexistent/k.pem" }'),
                            "TLS_Key")
        self.assert_refused(self.check('  Peer "10.0.0.0/8" { Auth_Users_File = "/nonexistent/u" }'),
                            "Auth_Users_File")

    def test_unknown_extension(self):
        self.assert_refused(self.check('  SMTP_Extensions = ( "PIPELINING" "STARTTTLS" )'),
                            "unknown extension", "STARTTLS", "PIPELINING")


if __name__ == "__main__":
    harness.main()
