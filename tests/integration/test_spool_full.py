"""test_spool_full.py: a full spool file system gives 451, never 250, and loses nothing.

The spool lives on a small tmpfs mounted by the test (root only; elsewhere the test is
skipped, and in CI, which runs as root, it always runs). Clients inject until the file system
is full: every reply to DATA is 250 or 451 4.3.0, every 250 is in the spool, and no partial
batch file is left behind. After space is freed, mail is accepted again.
"""

import os
import re
import shutil
import smtplib
import subprocess
import unittest

import harness

IMPETUSD = harness.require_impetusd()
SPOOL_TOOL = os.path.join(os.path.dirname(IMPETUSD), "impetus-spool")

CONF = """\
Spoolbase = "spool"
Suspend_Delivery = true
Pidfile = "var/run/impetusd.pid"
Event_Loops = 1
ec_logger { Paniclog = "var/log/paniclog.ec" }
ESMTP_Listener {
  Relay_Domains = ( "full.test" )
  Listen "127.0.0.1:%d" { }
}
"""


@unittest.skipUnless(os.geteuid() == 0, "mounting a tmpfs needs root")
class SpoolFullTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.TempDir(prefix="impetus-full-")
        self.addCleanup(self.work.close)
        self.spool = os.path.join(self.work.path, "spool")
        os.mkdir(self.spool)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", self.spool],
                           capture_output=True, text=True)
        if r.returncode != 0:
            if os.environ.get("CI") == "true":
                self.fail("cannot mount a tmpfs: " + r.stderr)
            self.skipTest("cannot mount a tmpfs: " + r.stderr.strip())
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.spool]))

    def send(self, port, body):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("client.test")
            c.mail("s@client.test")
            c.rcpt("r@full.test")
            return c.data(body)

    def test_full_spool_gives_451(self):
        port = harness.free_port()
        d = harness.Daemon(CONF % port, workdir=self.work.path)
        self.addCleanup(d.close)
        d.start()
        d.wait_log("started")
        body = b"Subject: fill\r\n\r\n" + (b"x" * 998 + b"\r\n") * 100      # ~100 KB
        acked, refused = [], 0
        for i in range(60):                                                   # ~6 MB > 2 MB
            code, resp = self.send(port, body)
            self.assertIn(code, (250, 451), resp)
            if code == 250:
                acked.append(re.search(rb"queued as (\S+)", resp).group(1).decode())
            else:
                self.assertIn(b"4.3.0", resp)
                refused += 1
        self.assertGreater(len(acked), 0)
        self.assertGreater(refused, 0, "the spool never filled up")
        out = subprocess.run([SPOOL_TOOL, "list", self.spool], capture_output=True, text=True)
        listed = {l.split()[1] for l in out.stdout.splitlines() if l.strip()}
        self.assertEqual(set(acked) - listed, set(), "acknowledged messages missing")
        self.assertEqual(len(listed), len(acked), "a refused message was kept")
        chk = subprocess.run([SPOOL_TOOL, "check", self.spool], capture_output=True, text=True)
        self.assertEqual(chk.returncode, 0, chk.stdout)
        leftovers = [n for _, _, files in os.walk(self.spool) for n in files if n.endswith(".tmp")]
        self.assertEqual(leftovers, [], "partial files left")
        self.assertRegex(d.paniclog(), r"\[warn\] spool: cannot store a message")
        # Free space: mail flows again.
        for b in acked[: len(acked) // 2 + 1]:
            for root, _, files in os.walk(self.spool):
                if b in files:
                    os.unlink(os.path.join(root, b))
        code, resp = self.send(port, b"Subject: again\r\n\r\nsmall\r\n")
        self.assertEqual(code, 250, resp)
        self.assertEqual(d.stop(), 0, d.diagnostics())


if __name__ == "__main__":
    harness.main()
