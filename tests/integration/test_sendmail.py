"""test_sendmail.py: local submission through impetus-sendmail and the Unix-socket listener.

The daemon listens on a loopback port and on a Unix socket in its work directory;
impetus-sendmail (next to impetusd) submits with -S. Acceptance is observed through the
mainlog's R records and `impetus-spool show` (the stored envelope and body); failures
through the exit status (sysexits.h) and stderr. The socket itself: mode 0660, removed at
stop, a stale file replaced, a live socket never taken over.
"""

import os
import pwd
import signal
import socket
import stat
import subprocess
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()
SENDMAIL = os.path.join(os.path.dirname(IMPETUSD), "impetus-sendmail")
SPOOL_TOOL = os.path.join(os.path.dirname(IMPETUSD), "impetus-spool")
SOCK = "var/run/submit.sock"

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_NOUSER, EX_UNAVAILABLE = 64, 65, 66, 67, 69
EX_TEMPFAIL = 75

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


def config(port, sock=SOCK, sock_body="", spool="var/spool"):
    return BASE.replace("var/spool", spool) + """
ESMTP_Listener {
  Banner_Hostname = "mx.impetus.test"
  Listen "127.0.0.1:%d" { }
  Listen "%s" {
%s
  }
}
""" % (port, sock, sock_body)


def connectable(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
        return True
    except OSError:
        return False


class SendmailBase(unittest.TestCase):
    sock_body = ""

    def setUp(self):
        if not os.access(SENDMAIL, os.X_OK):
            self.fail("impetus-sendmail not built at %s" % SENDMAIL)
        self.port = harness.free_port()
        self.d = harness.Daemon(config(self.port, sock_body=self.sock_body))
        self.addCleanup(self.d.close)
        self.d.start()
        self.d.wait_log("started")
        self.sock = os.path.join(self.d.workdir, SOCK)
        harness.wait_until(lambda: harness.smtp_ready(self.sock), 10, what="Unix listener up")

    def sendmail(self, args, data, sock=None, env=None):
        """Run impetus-sendmail -S SOCK args with data on stdin: (rc, stderr)."""
        if isinstance(data, str):
            data = data.encode()
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.run([SENDMAIL, "-S", sock or self.sock] + list(args), input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                           cwd=self.d.workdir, env=full_env)
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def receptions(self, n, timeout=10):
        """Wait for n R records; a list of (msgid, batchid, rcpt, sender)."""
        path = os.path.join(self.d.workdir, "var/log/mainlog.ec")

        def records():
            out = []
            for line in harness._read(path).splitlines():
                f = line.split("@")
                if len(f) > 4 and f[4] == "R":
                    rcpt = f[5] + ("@" + f[6] if f[6] else "")
                    sender = f[7] + ("@" + f[8] if f[8] else "")
                    out.append((f[1], f[2], rcpt, sender))
            return out
        try:
            harness.wait_until(lambda: len(records()) >= n, timeout, what="%d R records" % n)
        except harness.HarnessError:
            self.fail("want %d R records, got %r\n%s" % (n, records(), self.d.diagnostics()))
        time.sleep(0.2)    # nothing more should come
        got = records()
        self.assertEqual(len(got), n, got)
        return got

    def show(self, ident):
        """`impetus-spool show ID SPOOL`: (header text, body bytes)."""
        p = subprocess.run([SPOOL_TOOL, "show", ident, os.path.join(self.d.workdir, "var/spool")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        meta, body = p.stdout.split(b"\n\n", 1)
        return meta.decode(), body

    def user_sender(self):
        return "%s@%s" % (pwd.getpwuid(os.getuid()).pw_name, socket.gethostname())


class Submission(SendmailBase):

    def test_recipients_as_arguments(self):
        rc, err = self.sendmail(["a@x.test", "<b@x.test>"], "Subject: args\n\nhello\n")
        self.assertEqual(rc, 0, err)
        recs = self.receptions(2)
        self.assertEqual(sorted(r[2] for r in recs), ["a@x.test", "b@x.test"])
        self.assertEqual(recs[0][3], self.user_sender())
        meta, body = self.show(recs[0][1])
        self.assertIn("peer: local", meta)
        self.assertIn(b"(local submission)", body)
        self.assertIn(b"\r\nSubject: args\r\n", body)
        self.assertIn(b"\r\nFrom: " + self.user_sender().encode() + b"\r\n", body)
        self.assertIn(b"\r\nDate: ", body)
        self.assertIn(b"\r\nMessage-ID: <", body)
        self.assertTrue(body.endswith(b"\r\n\r\nhello\r\n"), body)

    def test_t_reads_to_cc_bcc_and_removes_bcc(self):
        msg = ("To: Jo Smith <jo@x.test>, \"Doe, Al\" <al@x.test>\n"
               "Cc: cc1@x.test,\n"
               "\tcc2@x.test (second)\n"
               "Bcc: hidden@x.test,\n"
               " hidden2@x.test\n"
               "Subject: t\n"
               "\n"
               "To: not-a-header@x.test\n")
        rc, err = self.sendmail(["-t", "extra@x.test", "jo@x.test"], msg)
        self.assertEqual(rc, 0, err)
        recs = self.receptions(7)
        self.assertEqual(sorted(r[2] for r in recs),
                         sorted(["extra@x.test", "jo@x.test", "al@x.test", "cc1@x.test",
                                 "cc2@x.test", "hidden@x.test", "hidden2@x.test"]))
        self.assertEqual(len({r[1] for r in recs}), 1, "one batch")
        _, body = self.show(recs[0][1])
        self.assertNotIn(b"Bcc:", body)
        self.assertNotIn(b"hidden", body)
        self.assertIn(b"\r\nCc: cc1@x.test,\r\n\tcc2@x.test (second)\r\nSubject: t\r\n", body)
        self.assertIn(b"\r\n\r\nTo: not-a-header@x.test\r\n", body)

    def test_t_without_recipients_is_a_usage_error(self):
        rc, err = self.sendmail(["-t"], "Subject: none\n\nbody\n")
        self.assertEqual(rc, EX_USAGE, err)
        self.assertIn("no recipients", err)
        rc, err = self.sendmail(["-t"], "To: undisclosed-recipients:;\n\nbody\n")
        self.assertEqual(rc, EX_USAGE, err)

    def test_lone_dot(self):
        text = "Subject: dots\n\nline1\n.\nline2\n..x\n"
        rc, err = self.sendmail(["-i", "i@x.test"], text)
        self.assertEqual(rc, 0, err)
        rc, err = self.sendmail(["-oi", "oi@x.test"], text)
        self.assertEqual(rc, 0, err)
        rc, err = self.sendmail(["plain@x.test"], text)
        self.assertEqual(rc, 0, err)
        recs = {r[2]: r for r in self.receptions(3)}
        for who in ("i@x.test", "oi@x.test"):
            _, body = self.show(recs[who][1])
            self.assertTrue(body.endswith(b"\r\n\r\nline1\r\n.\r\nline2\r\n..x\r\n"), (who, body))
        _, body = self.show(recs["plain@x.test"][1])
        self.assertTrue(body.endswith(b"\r\n\r\nline1\r\n"), body)

    def test_line_ends_stored_as_crlf(self):
        rc, err = self.sendmail(["lf@x.test"], b"Subject: lf\n\na\nb\r\nc\rd\n\nlast")
        self.assertEqual(rc, 0, err)
        recs = self.receptions(1)
        _, body = self.show(recs[0][1])
        self.assertTrue(body.endswith(b"\r\n\r\na\r\nb\r\nc\r\nd\r\n\r\nlast\r\n"), body)
        self.assertNotIn(b"\r\r", body)
        self.assertEqual(body.count(b"\n"), body.count(b"\r\n"), "a bare LF in %r" % body)
        self.assertEqual(body.count(b"\r"), body.count(b"\r\n"), "a bare CR in %r" % body)

    def test_sender(self):
        rc, err = self.sendmail(["-f", "boss@x.test", "f@x.test"], "Subject: f\n\nx\n")
        self.assertEqual(rc, 0, err)
        rc, err = self.sendmail(["-r<bounce@x.test>", "r@x.test"], "Subject: r\n\nx\n")
        self.assertEqual(rc, 0, err)
        rc, err = self.sendmail(["-f", "<>", "null@x.test"], "Subject: null\n\nx\n")
        self.assertEqual(rc, 0, err)
        recs = {r[2]: r for r in self.receptions(3)}
        self.assertEqual(recs["f@x.test"][3], "boss@x.test")
        self.assertEqual(recs["r@x.test"][3], "bounce@x.test")
        meta, body = self.show(recs["null@x.test"][1])
        self.assertIn("mail-from: <>", meta)
        self.assertNotIn(b"\r\nFrom:", body)
        meta, body = self.show(recs["f@x.test"][1])
        self.assertIn("mail-from: boss@x.test", meta)
        self.assertIn(b"\r\nFrom: boss@x.test\r\n", body)

    def test_full_name(self):
        rc, err = self.sendmail(["-F", "Jo Smith", "-f", "jo@x.test", "n1@x.test"],
                                "Subject: name\n\nx\n")
        self.assertEqual(rc, 0, err)
        rc, err = self.sendmail(["-F", "Smith, Jo", "-f", "jo@x.test", "n2@x.test"],
                                "Subject: name\n\nx\n")
        self.assertEqual(rc, 0, err)
        rc, err = self.sendmail(["-F", "Jo Smith", "n3@x.test"],
                                "From: Someone <some@x.test>\nSubject: name\n\nx\n")
        self.assertEqual(rc, 0, err)
        recs = {r[2]: r for r in self.receptions(3)}
        _, body = self.show(recs["n1@x.test"][1])
        self.assertIn(b"\r\nFrom: Jo Smith <jo@x.test>\r\n", body)
        _, body = self.show(recs["n2@x.test"][1])
        self.assertIn(b"\r\nFrom: \"Smith, Jo\" <jo@x.test>\r\n", body)
        _, body = self.show(recs["n3@x.test"][1])
        self.assertIn(b"\r\nFrom: Someone <some@x.test>\r\n", body)
        self.assertEqual(body.count(b"\r\nFrom:"), 1, body)

    def test_environment_names_the_socket(self):
        p = subprocess.run([SENDMAIL, "env@x.test"], input=b"Subject: env\n\nx\n",
                           stderr=subprocess.PIPE, timeout=60,
                           env=dict(os.environ, IMPETUS_SUBMIT_SOCKET=self.sock))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.receptions(1)[0][2], "env@x.test")

    def test_smtp_on_stdin(self):
        """-bs: the caller speaks SMTP; the tool relays it to the daemon."""
        p = subprocess.Popen([SENDMAIL, "-bs", "-S", self.sock], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(p.kill)

        def reply():
            while True:
                line = p.stdout.readline()
                self.assertTrue(line, "EOF from impetus-sendmail -bs")
                if line[3:4] != b"-":
                    return line

        def cmd(text):
            p.stdin.write(text.encode() + b"\r\n")
            p.stdin.flush()
            return reply()

        self.assertTrue(reply().startswith(b"220 "))
        self.assertTrue(cmd("EHLO client").startswith(b"250 "))
        self.assertTrue(cmd("MAIL FROM:<bs@x.test>").startswith(b"250 "))
        self.assertTrue(cmd("RCPT TO:<bs-rcpt@x.test>").startswith(b"250 "))
        self.assertTrue(cmd("DATA").startswith(b"354 "))
        self.assertIn(b"queued as", cmd("Subject: bs\r\n\r\nhi\r\n."))
        self.assertTrue(cmd("QUIT").startswith(b"221 "))
        _, errout = p.communicate(timeout=10)    # closes stdin
        self.assertEqual(p.returncode, 0, errout)
        recs = self.receptions(1)
        self.assertEqual((recs[0][2], recs[0][3]), ("bs-rcpt@x.test", "bs@x.test"))


class ExitCodes(SendmailBase):

    def test_usage(self):
        for args in (["-x", "a@x.test"], ["-bp"], ["-oZ", "a@x.test"], []):
            rc, err = self.sendmail(args, "x\n")
            self.assertEqual(rc, EX_USAGE, (args, err))
            self.assertIn("usage:", err)

    def test_no_daemon(self):
        rc, err = self.sendmail(["a@x.test"], "x\n", sock=self.d.workdir + "/var/run/none.sock")
        self.assertEqual(rc, EX_UNAVAILABLE, err)
        self.assertIn("cannot connect", err)

    def test_no_input(self):
        p = subprocess.run([SENDMAIL, "-S", self.sock, "a@x.test"], stdin=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60, preexec_fn=lambda: os.close(0))
        self.assertEqual(p.returncode, EX_NOINPUT, p.stderr)

    def test_nul_in_message(self):
        rc, err = self.sendmail(["a@x.test"], b"Subject: nul\n\na\x00b\n")
        self.assertEqual(rc, EX_DATAERR, err)

    def test_refused_recipient(self):
        rc, err = self.sendmail(["good@x.test", "bad@@x.test"], "Subject: r\n\nx\n")
        self.assertEqual(rc, EX_NOUSER, err)
        self.assertIn("bad@@x.test", err)
        self.assertIn("501", err)
        self.assertIn("sent to 1 of 2", err)
        self.assertEqual([r[2] for r in self.receptions(1)], ["good@x.test"])


class ListenerLimits(SendmailBase):
    # Scoped to the Unix Listen: 2 recipients per transaction, 600-byte messages, and one
    # session at a time.
    sock_body = """    Max_Recipients_Per_Message = 2
    Max_Message_Size = 600
    Listener_Sessions = 1"""

    def test_recipient_limit_splits_transactions(self):
        rcpts = ["r%d@x.test" % i for i in range(5)]
        rc, err = self.sendmail(rcpts, "Subject: many\n\nx\n")
        self.assertEqual(rc, 0, err)
        recs = self.receptions(5)
        self.assertEqual(sorted(r[2] for r in recs), rcpts)
        self.assertEqual(len({r[1] for r in recs}), 3, "3 transactions of at most 2: %r" % recs)

    def test_message_too_big(self):
        rc, err = self.sendmail(["big@x.test"], "Subject: big\n\n" + ("y" * 70 + "\n") * 20)
        self.assertEqual(rc, EX_DATAERR, err)
        self.assertIn("552", err)

    def test_tempfail(self):
        """A second session over Listener_Sessions gets 421 4.4.5: EX_TEMPFAIL."""
        def hold():
            # setUp's probe may still count until its session is gone: 421, try again.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(self.sock)
            if s.recv(512).startswith(b"220 "):
                return s
            s.close()
            return None
        held = harness.wait_until(hold, 10, interval=0.1, what="the one session")
        self.addCleanup(held.close)
        rc, err = self.sendmail(["a@x.test"], "Subject: busy\n\nx\n")
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.assertIn("421", err)
        held.close()
        harness.wait_until(lambda: self.sendmail(["later@x.test"], "Subject: l\n\nx\n")[0] == 0,
                           10, interval=0.2, what="a session once the first is gone")


class SocketFile(unittest.TestCase):

    def start(self, workdir=None, sock=SOCK, spool="var/spool", wait=True):
        d = harness.Daemon(config(harness.free_port(), sock=sock, spool=spool), workdir=workdir)
        self.addCleanup(d.close)
        d.start(wait=wait)
        return d

    def test_mode_and_removal_at_stop(self):
        d = self.start()
        d.wait_log("started")
        path = os.path.join(d.workdir, SOCK)
        st = os.lstat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, oct(st.st_mode))
        self.assertEqual(st.st_uid, os.geteuid())
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.lexists(path), "the socket file outlived the daemon")

    def test_live_socket_is_not_taken_over(self):
        with harness.TempDir() as shared:
            path = shared.join("submit.sock")
            first = self.start(sock=path)
            first.wait_log("started")
            harness.wait_until(lambda: connectable(path), 10, what="first daemon's socket")
            second = self.start(sock=path, wait=False)
            rc = second.wait(timeout=15)
            self.assertNotEqual(rc, 0)
            self.assertIn("another process is listening on it", second.stderr() + second.paniclog())
            # The first daemon still has it and still takes mail through it.
            p = subprocess.run([SENDMAIL, "-S", path, "still@x.test"], input=b"Subject: s\n\nx\n",
                               stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(first.stop(), 0)
            self.assertFalse(os.path.lexists(path))

    def test_stale_socket_is_replaced(self):
        d = self.start()
        d.wait_log("started")
        path = os.path.join(d.workdir, SOCK)
        d.signal(signal.SIGKILL)
        d.wait(timeout=10)
        self.assertTrue(os.path.lexists(path), "SIGKILL leaves the file behind")
        os.unlink(os.path.join(d.workdir, "var/run/impetusd.pid"))
        since = len(d.paniclog())
        again = self.start(workdir=d.workdir)
        again.wait_log("started", since=since)
        harness.wait_until(lambda: connectable(path), 10, what="socket replaced")
        self.assertEqual(again.stop(), 0)

    def test_other_file_is_refused(self):
        with harness.TempDir() as shared:
            path = shared.join("plain-file")
            with open(path, "w") as f:
                f.write("keep me\n")
            d = self.start(sock=path, wait=False)
            self.assertNotEqual(d.wait(timeout=15), 0)
            self.assertIn("not a socket", d.stderr() + d.paniclog())
            with open(path) as f:
                self.assertEqual(f.read(), "keep me\n")

    def test_check_accepts_unix_listen_names(self):
        for name in ("/run/impetus/submit.sock", "./submit.sock", "var/run/submit.sock"):
            r = harness.check(config(2525, sock=name))
            self.assertEqual(r.rc, 0, (name, r.stderr))
        r = harness.check(config(2525, sock="/" + "x" * 120))
        self.assertNotEqual(r.rc, 0)
        self.assertIn("Unix socket path", r.stderr + r.stdout)


if __name__ == "__main__":
    harness.main()
