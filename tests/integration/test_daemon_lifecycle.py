"""test_daemon_lifecycle.py: impetusd's command line, start, reload, log reopen and stop.

The contract under test:
  impetusd -c FILE            runs in the foreground; no -c: the embedded default config
  impetusd -c FILE --check    exit 0 if good, else non-zero and FILE:LINE:COL: error: TEXT
  impetusd --version
  paniclog lines `<unix time>: [<level>] text`: `started` on start; SIGHUP `configuration
  reloaded`, or a [warn] `reload refused` with the error's file:line:col while the old
  configuration keeps running; SIGUSR1 reopens the paniclog; SIGTERM stops gracefully
  (exit 0, pidfile removed, `stopped`); a second daemon on the same Spoolbase refuses to
  start (`in use` on stderr).
"""

import os
import re
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()

CONF = """\
# impetus integration test: lifecycle
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
ec_logger {
  paniclog = "var/log/paniclog.ec"
}
"""

# CONF with one more line: the unknown option is on line 8, its name starts at column 3.
UNKNOWN_OPTION = CONF + "  No_Such_Option = 1\n"
UNKNOWN_LINE, UNKNOWN_COL = 8, 3

# A reload candidate that would also move the paniclog, but is refused (same error place).
BAD_RELOAD = CONF.replace("var/log/paniclog.ec", "var/log/other.ec") + "  No_Such_Option = 1\n"

# Line 2 has a doubled "=" (a string left open would only fail where the next quote is).
SYNTAX_ERROR = CONF.replace('Spoolbase = "var/spool"', 'Spoolbase = = "var/spool"')

# A good reload candidate: same settings (Event_Loops and the like need a restart), a comment.
GOOD_RELOAD = CONF + "# reloaded by the test\n"

PANICLOG_LINE = re.compile(r"^(\d{9,}): \[([a-z]+)\] (.*)$")


def project_version():
    with open(os.path.join(harness.SOURCE_DIR, "CMakeLists.txt")) as f:
        text = f.read()
    m = re.search(r"project\(\s*impetus\s+VERSION\s+([0-9][0-9.]*)", text)
    return m.group(1) if m else None


def error_location(conf_path, line, col):
    """A regex for `FILE:LINE:COL: error:` with FILE as given, absolute, or its basename."""
    names = {conf_path, os.path.abspath(conf_path), os.path.basename(conf_path)}
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(r"(?:^|[\s/])(?:%s):%d:%d: error: " % (alt, line, col), re.M)


class LogFormat:
    def assertPaniclogWellFormed(self, daemon):
        text = daemon.paniclog()
        self.assertTrue(text.endswith("\n"), "paniclog does not end with a newline:\n" + text)
        now = time.time()
        for line in text.splitlines():
            m = PANICLOG_LINE.match(line)
            self.assertIsNotNone(m, "paniclog line %r is not `<time>: [level] text`" % line)
            self.assertLess(abs(int(m.group(1)) - now), 600, "timestamp far from now: %r" % line)


class CommandLineTest(unittest.TestCase):
    def test_version(self):
        r = harness.run_impetusd(["--version"])
        self.assertEqual(r.rc, 0, r)
        version = project_version()
        self.assertIsNotNone(version)
        self.assertIn(version, r.stdout + r.stderr)

    def test_check_good_configuration(self):
        r = harness.check(CONF)
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("error:", r.stderr)

    def test_check_embedded_default_configuration(self):
        # `impetusd` without -c uses the embedded default; --check only parses it, so
        # nothing is bound or written outside the temp dir.
        r = harness.run_impetusd(["--check"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("error:", r.stderr)

    def test_check_unknown_option_reports_file_line_col(self):
        r = harness.check(UNKNOWN_OPTION)
        self.assertNotEqual(r.rc, 0, r)
        loc = error_location(r.conf_path, UNKNOWN_LINE, UNKNOWN_COL)
        self.assertRegex(r.stderr, loc)
        line = [l for l in r.stderr.splitlines() if loc.search(l)][0]
        self.assertIn("No_Such_Option", line)

    def test_check_syntax_error_reports_file_line(self):
        r = harness.check(SYNTAX_ERROR)
        self.assertNotEqual(r.rc, 0, r)
        names = "|".join(re.escape(n) for n in (r.conf_path, os.path.basename(r.conf_path)))
        self.assertRegex(r.stderr, r"(?:%s):2:\d+: error: " % names)

    def test_unknown_option_does_not_start(self):
        d = harness.Daemon(UNKNOWN_OPTION)
        self.addCleanup(d.close)
        d.start(wait=False)
        rc = d.wait(timeout=15)
        self.assertNotEqual(rc, 0, d.diagnostics())
        self.assertRegex(d.stderr(), error_location(d.conf_path, UNKNOWN_LINE, UNKNOWN_COL))
        self.assertFalse(os.path.exists(d.pidfile),
                         "pidfile written by a daemon that must not start")
        self.assertNotIn("started", d.paniclog())


class LifecycleTest(LogFormat, unittest.TestCase):
    def daemon(self, conf=CONF, **kw):
        d = harness.Daemon(conf, **kw)
        self.addCleanup(d.close)
        d.start()
        return d

    def test_start_foreground_and_sigterm(self):
        d = self.daemon()
        self.assertEqual(d.pidfile_pid(), d.pid, "pidfile must hold the foreground process's pid")
        d.wait_log(r"^\d+: \[info\] .*started")
        time.sleep(0.3)
        self.assertTrue(d.running(), d.diagnostics())
        self.assertTrue(os.path.isdir(os.path.join(d.workdir, "var/spool")), "no Spoolbase")
        rc = d.stop()
        self.assertEqual(rc, 0, d.diagnostics())
        self.assertFalse(os.path.exists(d.pidfile), "pidfile not removed on SIGTERM")
        self.assertRegex(d.paniclog(), r"(?m)^\d+: \[\w+\] .*stopped")
        self.assertPaniclogWellFormed(d)

    def test_restart_on_same_spool_after_stop(self):
        d = self.daemon()
        d.wait_log("started")
        self.assertEqual(d.stop(), 0, d.diagnostics())
        again = self.daemon(workdir=d.workdir, conf_name="again.conf")
        self.assertEqual(again.pidfile_pid(), again.pid)
        self.assertEqual(again.stop(), 0, again.diagnostics())

    def test_reload_good_configuration(self):
        d = self.daemon()
        d.wait_log("started")
        mark = len(d.paniclog())
        d.write_conf(GOOD_RELOAD)
        d.reload()
        d.wait_log(r"^\d+: \[\w+\] .*configuration reloaded", since=mark)
        self.assertTrue(d.running(), d.diagnostics())
        self.assertEqual(d.pidfile_pid(), d.pid)
        self.assertEqual(d.stop(), 0, d.diagnostics())
        self.assertPaniclogWellFormed(d)

    def test_reload_bad_configuration_is_refused_then_fixed(self):
        d = self.daemon()
        d.wait_log("started")
        mark = len(d.paniclog())
        d.write_conf(BAD_RELOAD)
        d.reload()
        m = d.wait_log(r"^\d+: \[warn\] .*reload refused.*$", since=mark)
        line = m.group(0)
        self.assertRegex(line, r"%s:%d:%d" % (re.escape(os.path.basename(d.conf_path)),
                                              UNKNOWN_LINE, UNKNOWN_COL))
        time.sleep(0.3)
        self.assertTrue(d.running(), "daemon died on a refused reload\n" + d.diagnostics())
        self.assertEqual(d.pidfile_pid(), d.pid)
        self.assertNotIn("configuration reloaded", d.paniclog()[mark:])
        # the old configuration stays: the paniclog did not move to the refused file's path
        self.assertFalse(os.path.exists(os.path.join(d.workdir, "var/log/other.ec")))

        mark = len(d.paniclog())
        d.write_conf(CONF)
        d.reload()
        d.wait_log(r"^\d+: \[\w+\] .*configuration reloaded", since=mark)
        self.assertEqual(d.stop(), 0, d.diagnostics())
        self.assertPaniclogWellFormed(d)

    def test_sigusr1_reopens_paniclog(self):
        d = self.daemon()
        d.wait_log("started")
        rotated = d.paniclog_path + ".1"
        os.rename(d.paniclog_path, rotated)
        d.reopen_logs()
        # give the reopen a moment to happen before the record that must land in the new file
        try:
            harness.wait_until(lambda: os.path.exists(d.paniclog_path), 2.0)
        except harness.HarnessError:
            pass
        d.reload()
        d.wait_log(r"configuration reloaded")
        with open(rotated) as f:
            self.assertNotIn("configuration reloaded", f.read())
        self.assertTrue(d.running(), d.diagnostics())
        self.assertEqual(d.stop(), 0, d.diagnostics())
        self.assertIn("stopped", d.paniclog())
        self.assertPaniclogWellFormed(d)

    def test_reload_refuses_restart_only_change(self):
        d = self.daemon()
        d.wait_log("started")
        mark = len(d.paniclog())
        d.write_conf(CONF.replace("Event_Loops = 2", "Event_Loops = 3"))
        d.reload()
        line = d.wait_log(r"\[warn\] reload refused.*", since=mark)
        self.assertIn("Event_Loops cannot change while impetusd runs", d.paniclog()[mark:])
        self.assertRegex(d.paniclog()[mark:], error_location(d.conf_path, 4, 1))
        self.assertTrue(d.running(), d.diagnostics())
        self.assertEqual(d.stop(), 0, d.diagnostics())

    @unittest.skipUnless(os.geteuid() == 0, "needs root to test the privilege drop")
    def test_drops_privileges_to_user(self):
        conf = CONF + "Security { User = nobody }\n"
        d = harness.Daemon(conf)
        self.addCleanup(d.close)
        os.chmod(d.workdir, 0o755)          # nobody must reach var/ below it
        d.start()
        d.wait_log(r"running as user nobody")
        with open("/proc/%d/status" % d.pid) as f:
            status = f.read()
        uids = re.search(r"(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status).groups()
        self.assertEqual(set(uids), {"65534"}, "real, effective, saved and fs uid must be nobody")
        self.assertRegex(status, r"(?m)^Groups:\s*65534\s*$")
        # After the drop the paniclog can still be reopened (rotation) and written.
        os.rename(d.paniclog_path, d.paniclog_path + ".1")
        d.reopen_logs()
        harness.wait_until(lambda: os.path.exists(d.paniclog_path), 10)
        mark = len(d.paniclog())
        d.write_conf(conf + "# again\n")
        d.reload()
        d.wait_log("configuration reloaded", since=mark)
        self.assertEqual(d.stop(), 0, d.diagnostics())

    def test_second_daemon_on_same_spool_refused(self):
        first = self.daemon()
        first.wait_log("started")
        # Same Spoolbase, its own pidfile and paniclog: only the spool is shared.
        conf = (CONF.replace("var/run/impetusd.pid", "var/run/second.pid")
                    .replace("var/log/paniclog.ec", "var/log/second.ec"))
        second = harness.Daemon(conf, workdir=first.workdir, conf_name="second.conf",
                                pidfile="var/run/second.pid", paniclog="var/log/second.ec")
        self.addCleanup(second.close)
        second.start(wait=False)
        rc = second.wait(timeout=15)
        self.assertNotEqual(rc, 0, second.diagnostics())
        self.assertIn("in use", second.stderr())
        self.assertIn("spool", second.stderr().lower())
        self.assertFalse(os.path.exists(second.pidfile))
        self.assertTrue(first.running(), first.diagnostics())
        self.assertEqual(first.pidfile_pid(), first.pid, "the second daemon touched the pidfile")
        self.assertEqual(first.stop(), 0, first.diagnostics())


if __name__ == "__main__":
    harness.main()
