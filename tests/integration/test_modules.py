"""test_modules.py: loadable modules in the real daemon.

The contract under test:
  A global stanza named after a module loads <name>.so from Module_Search_Path; its
  instances are initialized at start (paniclog: `module NAME instance INST: initialized
  (PATH)`) and reloaded or initialized again on SIGHUP.
  A missing module is a configuration error: `--check` fails with FILE:LINE:COL and
  `module NAME: no NAME.so in DIRS`.
  A module stanza that cannot load or init refuses the reload (`reload refused` with the
  error) and the running configuration and modules stay; at start it is fatal.
  A module built outside the tree, from docs/modules.md and include/impetus/ alone
  (`cc -shared -fPIC -I$IMPETUS_SOURCE_DIR/include`), loads and runs.

No outbound delivery exists yet, so log_client_connection_failure is not fired end to end
here; tests/unit/module_test.c fires it at conn_failure_log directly.

Environment: IMPETUSD, IMPETUS_SOURCE_DIR, IMPETUS_MODULE_DIR (the build's modules
directory; default: `modules` beside the impetusd binary).
"""

import os
import re
import subprocess
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()
MODULE_DIR = os.environ.get("IMPETUS_MODULE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(IMPETUSD)), "modules")

BASE = """\
# impetus integration test: modules
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 1
ec_logger {
  paniclog = "var/log/paniclog.ec"
}
Module_Search_Path = ( "/nonexistent/modules" "%s" )
"""

# Line 9, column 1 is the first line after BASE.
CONF = BASE % MODULE_DIR + 'conn_failure_log {\n  path = "connfail.log"\n}\n'
MISSING_LINE, MISSING_COL = 12, 1
MISSING = CONF + "no_such_module { }\n"
NO_PATH = BASE % MODULE_DIR + "conn_failure_log {\n}\n"
UNKNOWN_OPTION = CONF + "example {\n  no_such_option = 1\n}\n"
GOOD_RELOAD = CONF + 'example "two" {\n  log_deliveries = true\n}\n'


def error_location(conf_path, line, col):
    """A regex for `FILE:LINE:COL: error:` with FILE as given, absolute, or its basename."""
    names = {conf_path, os.path.abspath(conf_path), os.path.basename(conf_path)}
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(r"(?:^|[\s/])(?:%s):%d:%d: error: " % (alt, line, col), re.M)


def require_modules():
    so = os.path.join(MODULE_DIR, "conn_failure_log.so")
    if not os.path.isfile(so):
        harness.skip_whole_test("no %s (build the modules, or set IMPETUS_MODULE_DIR)" % so)


require_modules()


class CheckTest(unittest.TestCase):
    def test_check_loads_modules(self):
        r = harness.check(GOOD_RELOAD)
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("error:", r.stderr)

    def test_check_missing_module_names_it_with_location(self):
        r = harness.check(MISSING)
        self.assertNotEqual(r.rc, 0, r)
        loc = error_location(r.conf_path, MISSING_LINE, MISSING_COL)
        self.assertRegex(r.stderr, loc)
        line = [l for l in r.stderr.splitlines() if loc.search(l)][0]
        self.assertIn("module no_such_module: no no_such_module.so in /nonexistent/modules, "
                      + MODULE_DIR, line)

    def test_check_unknown_module_option(self):
        r = harness.check(UNKNOWN_OPTION)
        self.assertNotEqual(r.rc, 0, r)
        self.assertRegex(r.stderr, error_location(r.conf_path, 13, 3))
        self.assertIn('unknown option "no_such_option"', r.stderr)


class DaemonModulesTest(unittest.TestCase):
    def daemon(self, conf=CONF, **kw):
        d = harness.Daemon(conf, **kw)
        self.addCleanup(d.close)
        d.start()
        return d

    def test_starts_and_loads_conn_failure_log(self):
        d = self.daemon()
        d.wait_log(r"started")
        d.wait_log(r"^\d+: \[info\] module conn_failure_log instance conn_failure_log: "
                   r"initialized \(%s\)$" % re.escape(os.path.join(MODULE_DIR,
                                                                   "conn_failure_log.so")))
        self.assertIn("module conn_failure_log: writing failed connections to connfail.log",
                      d.paniclog())
        self.assertTrue(os.path.isfile(os.path.join(d.workdir, "connfail.log")),
                        "conn_failure_log did not open its file\n" + d.diagnostics())
        self.assertEqual(d.stop(), 0, d.diagnostics())
        self.assertIn("stopped", d.paniclog())

    def test_reload_with_broken_module_stanza_is_refused(self):
        d = self.daemon()
        d.wait_log("started")
        # init fails: no path.
        mark = len(d.paniclog())
        d.write_conf(NO_PATH)
        d.reload()
        m = d.wait_log(r"^\d+: \[warn\] reload refused.*$", since=mark)
        self.assertIn("module conn_failure_log instance conn_failure_log: path is not set",
                      m.group(0))
        self.assertRegex(m.group(0), r"%s:9:1: error: " % re.escape(os.path.basename(d.conf_path)))
        # the module cannot be found.
        mark = len(d.paniclog())
        d.write_conf(MISSING)
        d.reload()
        m = d.wait_log(r"^\d+: \[warn\] reload refused.*$", since=mark)
        self.assertIn("module no_such_module: no no_such_module.so in", m.group(0))
        self.assertRegex(m.group(0), r"%s:%d:%d: error: " % (
            re.escape(os.path.basename(d.conf_path)), MISSING_LINE, MISSING_COL))
        time.sleep(0.3)
        self.assertTrue(d.running(), "daemon died on a refused reload\n" + d.diagnostics())
        self.assertNotIn("configuration reloaded", d.paniclog())
        self.assertNotIn("fatal", d.paniclog())

        # A good file is then accepted: the running instance is reloaded, a new one starts.
        mark = len(d.paniclog())
        d.write_conf(GOOD_RELOAD)
        d.reload()
        d.wait_log(r"configuration reloaded", since=mark)
        d.wait_log(r"module conn_failure_log instance conn_failure_log: reloaded", since=mark)
        d.wait_log(r"module example instance two: initialized", since=mark)
        d.wait_log(r"module example/two: ready \(log_deliveries on\)", since=mark)
        self.assertEqual(d.stop(), 0, d.diagnostics())

    def test_module_init_failure_at_start_is_fatal(self):
        d = harness.Daemon(NO_PATH)
        self.addCleanup(d.close)
        d.start(wait=False)
        rc = d.wait(timeout=15)
        self.assertNotEqual(rc, 0, d.diagnostics())
        self.assertIn("module conn_failure_log instance conn_failure_log: path is not set",
                      d.paniclog())
        self.assertFalse(os.path.exists(d.pidfile), "pidfile left behind")
        self.assertNotRegex(d.paniclog(), r"\] impetusd \S+ started")


class OutsideModuleTest(unittest.TestCase):
    """A module compiled against the public headers only, outside the build."""

    def setUp(self):
        self.cc = harness.skip_unless("cc")
        self.tmp = harness.TempDir(prefix="impetus-outside-")
        self.addCleanup(self.tmp.close)
        src = os.path.join(harness.SOURCE_DIR, "tests", "integration", "data",
                           "outside_module.c")
        self.so = self.tmp.join("outside_module.so")
        cmd = [self.cc, "-shared", "-fPIC", "-Wall", "-Werror",
               "-I" + os.path.join(harness.SOURCE_DIR, "include"), "-o", self.so, src]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, "%s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))

    def test_outside_module_loads_reloads_and_stops(self):
        conf = (BASE % self.tmp.path) + 'outside_module {\n  greeting = "hi there"\n}\n'
        d = harness.Daemon(conf)
        self.addCleanup(d.close)
        d.start()
        d.wait_log(r"module outside_module: init: hi there, registered on "
                   r"log_client_connection_failure")
        d.wait_log(r"module outside_module instance outside_module: initialized \(%s\)"
                   % re.escape(self.so))
        # It has no reload: a reload inits a new instance, then finis the old one.
        mark = len(d.paniclog())
        d.write_conf(conf.replace("hi there", "hello again")
                     + 'outside_module "second" {\n}\n')
        d.reload()
        d.wait_log(r"configuration reloaded", since=mark)
        d.wait_log(r"module outside_module: init: hello again", since=mark)
        d.wait_log(r"module outside_module/second: init: hello,", since=mark)
        d.wait_log(r"module outside_module: fini", since=mark)
        mark = len(d.paniclog())
        self.assertEqual(d.stop(), 0, d.diagnostics())
        text = d.paniclog()[mark:]
        self.assertEqual(text.count("fini"), 2, text)
        self.assertNotIn("fatal", d.paniclog())


if __name__ == "__main__":
    harness.main()
