"""test_logs.py: the log writers inside the real daemon.

ec_logger (mainlog, rejectlog, jsonlog) and bounce_logger (bouncelog) files are opened at start,
carry Momentum's heartbeat records, are reopened on SIGUSR1 after a rename (rotation), follow a
reload that moves them, and a reload naming a file that cannot be opened is refused while the
running files stay in use. No mail flows yet, so the records seen here are heartbeats; the
record layouts are covered field by field by tests/unit/log_format_test.c.
"""

import os
import re
import unittest

import harness

IMPETUSD = harness.require_impetusd()

CONF = """\
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 1
ec_logger {
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/%(mainlog)s"
  Rejectlog = "var/log/rejectlog.ec"
  Jsonlog = "var/log/events.json"
  Heartbeat = 1
}
bounce_logger {
  Bouncelog = "var/log/bouncelog.ec"
  Heartbeat = 1
}
"""


def conf(mainlog="mainlog.ec"):
    return CONF % {"mainlog": mainlog}


class LogWritersTest(unittest.TestCase):
    def daemon(self, text):
        d = harness.Daemon(text)
        self.addCleanup(d.close)
        d.start()
        d.wait_log("started")
        return d

    def path(self, d, name):
        return os.path.join(d.workdir, "var/log", name)

    def wait_for_line(self, path, regex, timeout=10):
        pattern = re.compile(regex, re.M)
        harness.wait_until(lambda: os.path.exists(path) and pattern.search(harness._read(path)),
                           timeout, what="%s in %s" % (regex, path))

    def test_files_heartbeats_and_rotation(self):
        d = self.daemon(conf())
        mainlog = self.path(d, "mainlog.ec")
        self.wait_for_line(mainlog, r"^\d+@@@@M$")
        self.wait_for_line(self.path(d, "bouncelog.ec"), r"^\d+@@@@M1$")
        self.wait_for_line(self.path(d, "rejectlog.ec"), r"^\d+: Marker 1$")
        self.assertTrue(os.path.exists(self.path(d, "events.json")))

        # Rotation: rename, SIGUSR1, the next records go to a new file at the same path.
        os.rename(mainlog, mainlog + ".1")
        mark = len(d.paniclog())
        d.reopen_logs()
        d.wait_log("logs reopened", since=mark)
        self.wait_for_line(mainlog, r"^\d+@@@@M$")
        self.assertRegex(harness._read(mainlog + ".1"), r"(?m)^\d+@@@@M$")
        self.assertEqual(d.stop(), 0, d.diagnostics())

    def test_reload_moves_a_log_and_refuses_an_unopenable_one(self):
        d = self.daemon(conf())
        self.wait_for_line(self.path(d, "mainlog.ec"), r"@@@@M$")

        mark = len(d.paniclog())
        d.write_conf(conf("moved.ec"))
        d.reload()
        d.wait_log("configuration reloaded", since=mark)
        self.wait_for_line(self.path(d, "moved.ec"), r"^\d+@@@@M$")

        mark = len(d.paniclog())
        d.write_conf(conf("no/such/dir/mainlog.ec"))
        d.reload()
        line = d.wait_log(r"\[warn\] reload refused.*", since=mark).group(0)
        self.assertIn("no/such/dir/mainlog.ec", line)
        self.assertTrue(d.running(), d.diagnostics())
        # The running configuration keeps writing where it did.
        size = os.path.getsize(self.path(d, "moved.ec"))
        harness.wait_until(lambda: os.path.getsize(self.path(d, "moved.ec")) > size, 10,
                           what="moved.ec keeps growing")
        self.assertEqual(d.stop(), 0, d.diagnostics())

    def test_unopenable_log_at_start_is_fatal(self):
        d = harness.Daemon(conf("no/such/dir/mainlog.ec"))
        self.addCleanup(d.close)
        d.start(wait=False)
        rc = d.wait(timeout=15)
        self.assertNotEqual(rc, 0, d.diagnostics())
        self.assertIn("no/such/dir/mainlog.ec", d.stderr())
        self.assertFalse(os.path.exists(d.pidfile), "pidfile left behind")


if __name__ == "__main__":
    harness.main()
