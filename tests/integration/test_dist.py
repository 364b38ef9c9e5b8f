"""test_dist.py: the files impetus ships for production (dist/, man/) fit the daemon.

  dist/impetus.conf       `impetusd --check` accepts it as shipped, and with every commented
                          example uncommented; with its paths moved into a temp dir and its
                          ports onto free loopback ports, the daemon runs on it: SMTP, the
                          submission, console and metrics endpoints, the logs it names, the
                          reload of the unit's ExecReload, the rotation of the logrotate
                          snippet's postrotate, a clean stop.
  dist/impetus.service    agrees with impetus.conf (pidfile and sockets in RuntimeDirectory,
                          logs in LogsDirectory, the spool writable, the same user), carries
                          the hardening, and passes `systemd-analyze verify` (skipped when
                          systemd-analyze is missing) with an exposure level of at most 3.
  dist/impetus.logrotate  covers every log file the configuration names and signals the
                          pidfile it names (`logrotate -d` on it when logrotate is installed).
  man/*.[58]              render without a groff warning; impetus.conf(5) lists every option
                          of docs/configuration.md, impetusd(8) every option of main.c.
"""

import configparser
import fnmatch
import http.client
import os
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import unittest

import harness

IMPETUSD = harness.require_impetusd()
SRC = harness.SOURCE_DIR
DIST_CONF = os.path.join(SRC, "dist", "impetus.conf")
DIST_UNIT = os.path.join(SRC, "dist", "impetus.service")
DIST_LOGROTATE = os.path.join(SRC, "dist", "impetus.logrotate")
MAN_PAGES = [os.path.join(SRC, "man", n) for n in ("impetusd.8", "impetusctl.8", "impetus.conf.5")]
MODULE_DIR = os.environ.get("IMPETUS_MODULE_DIR") or os.path.join(os.path.dirname(IMPETUSD),
                                                                  "modules")

# The installed locations the shipped files name, and where the tests move them.
SPOOL, RUN, LOG = "/var/spool/impetus", "/run/impetus", "/var/log/impetus"


def read(path):
    with open(path) as f:
        return f.read()


def conf_setting(text, name):
    """The value of the first `name = value` line (quotes removed), or None."""
    m = re.search(r'^\s*%s\s*=\s*"?([^"\s#]+)"?' % re.escape(name), text, re.M | re.I)
    return m.group(1) if m else None


def conf_log_paths(text):
    """Every log file the active configuration names."""
    names = "Paniclog|Mainlog|Rejectlog|Jsonlog|Bouncelog"
    return re.findall(r'^\s*(?:%s)\s*=\s*"([^"]+)"' % names, text, re.M | re.I)


def conf_unix_listens(text):
    """Every active Listen name that is a socket path."""
    return [n for n in re.findall(r'^\s*Listen\s+"([^"]+)"', text, re.M) if n.startswith("/")]


def uncomment_examples(text):
    """The configuration with every commented-out configuration line made active.

    A commented line is configuration when, after `# `, it is `Name = ...`, `Name "x" {`,
    `Name {`, `}` or a quoted list item; prose never starts that way in dist/impetus.conf.
    """
    pattern = re.compile(r'^(\s*)# ?(\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*(?:=|"[^"]*"\s*\{|\{)'
                         r'|\}|"[^"]*"\s*(?:#.*)?$))')
    return "\n".join(pattern.sub(r"\1\2", line) for line in text.split("\n"))


def make_credentials(workdir):
    """A self-signed certificate, its key and an AUTH users file in workdir."""
    openssl = harness.find_tool("openssl")
    cert, key, users = (os.path.join(workdir, n) for n in ("cert.pem", "key.pem", "users"))
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=mta1.impetus.test"],
                   check=True, capture_output=True, timeout=60)
    h = subprocess.run([openssl, "passwd", "-6", "secret"], check=True, capture_output=True,
                       text=True, timeout=60).stdout.strip()
    with open(users, "w") as f:
        f.write("alice:%s\n" % h)
    return cert, key, users


def read_unit(path):
    """The unit as {section: {key: [values...]}} (repeated keys keep every value)."""
    class MultiDict(dict):
        def __setitem__(self, key, value):
            if isinstance(value, list) and key in self:
                self[key].extend(value)
            else:
                super().__setitem__(key, value)
    parser = configparser.RawConfigParser(dict_type=MultiDict, strict=False,
                                          empty_lines_in_values=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(read(path))
    return {s: {k: v.split("\n") for k, v in parser.items(s)} for s in parser.sections()}


def parse_logrotate(text):
    """(file patterns, directives, postrotate script) of the snippet's one block."""
    m = re.search(r"^([^#\n{]+)\{\n(.*?)^\}", text, re.M | re.S)
    patterns = m.group(1).split()
    body = m.group(2)
    script = re.search(r"^\s*postrotate\n(.*?)^\s*endscript", body, re.M | re.S)
    directives = [l.strip() for l in re.sub(r"postrotate\n.*?endscript", "", body,
                                            flags=re.S).splitlines() if l.strip()]
    return patterns, directives, script.group(1) if script else ""


class ShippedConfTest(unittest.TestCase):
    def test_check_accepts_it_as_shipped(self):
        r = harness.run_impetusd(["-c", DIST_CONF, "--check"])
        self.assertEqual(r.rc, 0, "impetusd --check %s:\n%s" % (DIST_CONF, r.stderr))
        self.assertIn("configuration OK", r.stdout)

    def test_check_accepts_every_commented_example(self):
        text = uncomment_examples(read(DIST_CONF))
        # The examples are really there (the test is not vacuous).
        for example in ('Binding_Group "customers" {', 'Peer "10.20.0.0/16" {',
                        '"10.20.0.0/16"', "TLS_Certificate =", "Auth_Users_File =",
                        "DNS_Servers =", "Module_Search_Path ="):
            self.assertRegex(text, r"(?m)^\s*" + re.escape(example))
        with harness.TempDir() as tmp:
            cert, key, users = make_credentials(tmp.path)
            text = re.sub(r'"/etc/impetus/tls/[^"]*\.pem"', '"%s"' % cert, text)
            text = re.sub(r'"/etc/impetus/tls/[^"]*\.key"', '"%s"' % key, text)
            text = text.replace('"/etc/impetus/users"', '"%s"' % users)
            if os.path.isfile(os.path.join(MODULE_DIR, "conn_failure_log.so")):
                text = re.sub(r"(?m)^Module_Search_Path = .*$",
                              'Module_Search_Path = ( "%s" )' % MODULE_DIR, text)
            else:   # the module is not built here: check the rest
                text = re.sub(r"(?ms)^conn_failure_log \{.*?^\}", "", text)
            r = harness.check(text, workdir=tmp.path, conf_name="examples.conf")
            self.assertEqual(r.rc, 0, "the commented examples of dist/impetus.conf, made "
                             "active:\n%s" % r.stderr)

    def test_production_settings(self):
        text = read(DIST_CONF)
        self.assertEqual(conf_setting(text, "Spoolbase"), SPOOL)
        self.assertEqual(conf_setting(text, "Pidfile"), RUN + "/impetusd.pid")
        self.assertEqual(conf_setting(text, "Message_Expiration"), "604800")
        self.assertEqual(conf_setting(text, "User"), "impetus")
        self.assertEqual(conf_setting(text, "Group"), "impetus")
        self.assertRegex(text, r'(?m)^\s*Listen "0\.0\.0\.0:25"')
        self.assertRegex(text, r'(?ms)^Control_Listener \{\s*Listen "/run/impetus/control\.sock"')
        self.assertRegex(text, r'(?ms)^HTTP_Listener \{\s*Listen "127\.0\.0\.1:8025"')
        relay = re.search(r"(?ms)^Relay_Hosts = \((.*?)\)", text).group(1)
        self.assertEqual(re.findall(r'"([^"]+)"', re.sub(r"#.*", "", relay)),
                         ["127.0.0.0/8", "::1/128"], "Relay_Hosts: loopback only")
        self.assertIn("# ", relay, "Relay_Hosts: a commented example network")
        prohibited = re.search(r"(?ms)^Prohibited_Hosts = \((.*?)\)", text).group(1)
        self.assertEqual(re.findall(r'"([^"]+)"', prohibited),
                         ["127.0.0.0/8", "0.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12",
                          "192.168.0.0/16", "169.254.0.0/16", "::1/128", "fc00::/7",
                          "fe80::/10"])
        logs = conf_log_paths(text)
        self.assertEqual(len(logs), 5, logs)
        self.assertTrue(all(p.startswith(LOG + "/") for p in logs), logs)


class ShippedConfRunsTest(unittest.TestCase):
    """The daemon on dist/impetus.conf, moved into a temp dir and onto free loopback ports."""

    def setUp(self):
        self.smtp_port, self.http_port = harness.free_port(), harness.free_port()
        self.d = harness.Daemon("", pidfile="run/impetusd.pid", paniclog="log/paniclog.ec",
                                make_dirs=("spool", "run", "log"))
        self.addCleanup(self.d.close)
        w = self.d.workdir
        text = read(DIST_CONF)
        text = text.replace(SPOOL, os.path.join(w, "spool")).replace(
            RUN + "/", os.path.join(w, "run") + "/").replace(LOG + "/", os.path.join(w, "log") + "/")
        text = text.replace('"0.0.0.0:25"', '"127.0.0.1:%d"' % self.smtp_port)
        text = text.replace('"127.0.0.1:8025"', '"127.0.0.1:%d"' % self.http_port)
        # No switch to a user that may not exist here; no delivery attempts (no DNS).
        text = re.sub(r"(?ms)^Security \{.*?^\}\n", "", text)
        text += "\nSuspend_Delivery = true\n"
        self.assertNotIn(SPOOL, text)
        self.assertNotRegex(text, r'(?m)^[^#]*"(?:%s|%s)/' % (RUN, LOG))
        self.conf = text
        self.d.write_conf(text)

    def path(self, *parts):
        return os.path.join(self.d.workdir, *parts)

    def send(self, subject):
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as s:
            s.ehlo("client.impetus.test")
            s.sendmail("sender@client.impetus.test", ["rcpt@dist.impetus.test"],
                       "Subject: %s\r\n\r\nbody\r\n" % subject)

    def mainlog_receptions(self, path):
        return [l for l in harness._read(path).splitlines() if l.split("@")[4:5] == ["R"]]

    def test_runs_rotates_reloads_and_stops(self):
        d = self.d.start()
        d.wait_log(r"started")
        # SMTP on the listener, the logs the configuration names.
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as s:
            code, _ = s.ehlo("client.impetus.test")
            self.assertEqual(code, 250)
        self.send("first")
        mainlog = self.path("log", "mainlog.ec")
        harness.wait_until(lambda: len(self.mainlog_receptions(mainlog)) == 1, 10,
                           what="an R record in %s" % mainlog)
        for p in conf_log_paths(self.conf):
            self.assertTrue(os.path.isfile(p), "%s was not created" % p)
        # The Unix sockets in the run directory: submission and console.
        for p in conf_unix_listens(self.conf):
            self.assertTrue(stat.S_ISSOCK(os.stat(p).st_mode), "%s is not a socket" % p)
        self.console_answers(self.path("run", "control.sock"))
        self.metrics_answer()

        # Rotation as the logrotate snippet does it: rename, then its postrotate script.
        for p in conf_log_paths(self.conf):
            os.rename(p, p + ".1")
        _, _, script = parse_logrotate(read(DIST_LOGROTATE))
        script = script.replace(RUN + "/", self.path("run") + "/")
        r = subprocess.run(["/bin/sh", "-ec", script], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_log(r"logs reopened")
        self.send("second")
        harness.wait_until(lambda: len(self.mainlog_receptions(mainlog)) == 1, 10,
                           what="an R record in the new %s" % mainlog)
        self.assertEqual(len(self.mainlog_receptions(mainlog + ".1")), 1)

        # Reload as the unit's ExecReload lines do: --check, then SIGHUP to the main pid.
        since = len(d.paniclog())
        reload_cmds = read_unit(DIST_UNIT)["Service"]["ExecReload"]
        for cmd in reload_cmds:
            argv = cmd.split()
            if argv[0].endswith("/impetusd"):
                args = [d.conf_path if a == "/etc/impetus/impetus.conf" else a for a in argv[1:]]
                self.assertIn("--check", args)
                r = harness.run_impetusd(args)
                self.assertEqual(r.rc, 0, r.stderr)
            else:
                self.assertEqual(argv, ["/bin/kill", "-HUP", "$MAINPID"])
                os.kill(d.pidfile_pid(), signal.SIGHUP)
        d.wait_log(r"configuration reloaded", since=since)

        self.assertEqual(d.stop(), 0, d.diagnostics())
        self.assertFalse(os.path.exists(d.pidfile), "pidfile left behind")
        for p in conf_unix_listens(self.conf):
            self.assertFalse(os.path.exists(p), "%s left behind" % p)

    def console_answers(self, path):
        """`version` over the console socket names the daemon's version."""
        version = harness.run_impetusd(["--version"]).stdout.split()[-1]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"version\r\n")
            got = b""
            while version.encode() not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        self.assertIn(version, got.decode(errors="replace"), "console answer to `version`")

    def metrics_answer(self):
        for url in ("/health", "/metrics"):
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
            try:
                c.request("GET", url)
                resp = c.getresponse()
                body = resp.read()
            finally:
                c.close()
            self.assertEqual(resp.status, 200, "GET %s: %d %r" % (url, resp.status, body[:200]))
            self.assertTrue(body, "GET %s: empty body" % url)


class UnitTest(unittest.TestCase):
    def setUp(self):
        self.unit = read_unit(DIST_UNIT)
        self.svc = self.unit["Service"]
        self.conf = read(DIST_CONF)

    def one(self, key):
        values = self.svc.get(key)
        self.assertIsNotNone(values, "%s= is missing" % key)
        self.assertEqual(len(values), 1, "%s= given %d times" % (key, len(values)))
        return values[0]

    def test_runs_impetusd_in_the_foreground_on_the_shipped_conf(self):
        self.assertIn(self.one("Type"), ("simple", "exec"))
        self.assertEqual(self.one("ExecStart"), "/usr/sbin/impetusd -c /etc/impetus/impetus.conf")
        self.assertIn("/bin/kill -HUP $MAINPID", self.svc["ExecReload"])
        self.assertEqual(self.svc["ExecReload"][-1], "/bin/kill -HUP $MAINPID")
        self.assertIn("/usr/sbin/impetusd -c /etc/impetus/impetus.conf --check",
                      self.svc["ExecStartPre"])
        self.assertRegex(self.one("LimitNOFILE"), r"^\d+$")
        self.assertEqual(self.unit["Install"]["WantedBy"], ["multi-user.target"])

    def test_directories_match_the_conf(self):
        run = "/run/" + self.one("RuntimeDirectory")
        logs = "/var/log/" + self.one("LogsDirectory")
        self.assertEqual(os.path.dirname(conf_setting(self.conf, "Pidfile")), run)
        for p in conf_unix_listens(self.conf):
            self.assertEqual(os.path.dirname(p), run, p)
        for p in conf_log_paths(self.conf):
            self.assertEqual(os.path.dirname(p), logs, p)
        spool = conf_setting(self.conf, "Spoolbase")
        self.assertIn(spool, self.one("ReadWritePaths").split())
        self.assertTrue(any(spool in c and "install -d" in c for c in self.svc["ExecStartPre"]),
                        "the spool directory is created before the daemon starts")
        self.assertEqual(self.one("User"), conf_setting(self.conf, "User"))
        self.assertEqual(self.one("Group"), conf_setting(self.conf, "Group"))

    def test_hardening(self):
        want = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
                "ProtectControlGroups": "yes", "LockPersonality": "yes",
                "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
                "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes"}
        for key, value in want.items():
            self.assertEqual(self.one(key), value, key)
        self.assertEqual(set(self.one("RestrictAddressFamilies").split()),
                         {"AF_INET", "AF_INET6", "AF_UNIX"})
        self.assertEqual(self.one("CapabilityBoundingSet").split(), ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(self.one("AmbientCapabilities").split(), ["CAP_NET_BIND_SERVICE"])

    def test_systemd_analyze_verify(self):
        tool = harness.find_tool("systemd-analyze")
        if tool is None:
            self.skipTest("systemd-analyze not installed")
        with harness.TempDir() as tmp:
            # The binary where the unit expects it, and the man pages it names.
            unit = os.path.join(tmp.path, "impetus.service")
            with open(unit, "w") as f:
                f.write(read(DIST_UNIT).replace("/usr/sbin/impetusd", IMPETUSD))
            for page in MAN_PAGES:
                d = os.path.join(tmp.path, "man", "man" + page[-1])
                os.makedirs(d, exist_ok=True)
                shutil.copy(page, d)
            env = dict(os.environ, MANPATH=os.path.join(tmp.path, "man"), SYSTEMD_PAGER="",
                       SYSTEMD_LOG_COLOR="0")
            r = subprocess.run([tool, "verify", unit], capture_output=True, text=True,
                               timeout=60, cwd=tmp.path, env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("impetus.service", r.stdout + r.stderr)
            r = subprocess.run([tool, "security", "--offline=true", "--no-pager", unit],
                               capture_output=True, text=True, timeout=60, cwd=tmp.path,
                               env=env)
            m = re.search(r"Overall exposure level for impetus\.service: ([0-9.]+)", r.stdout)
            if r.returncode != 0 and m is None:
                return   # an older systemd-analyze without --offline
            self.assertIsNotNone(m, r.stdout + r.stderr)
            self.assertLessEqual(float(m.group(1)), 3.0, r.stdout)


class LogrotateTest(unittest.TestCase):
    def test_covers_the_logs_and_signals_the_pidfile(self):
        patterns, directives, script = parse_logrotate(read(DIST_LOGROTATE))
        conf = read(DIST_CONF)
        for p in conf_log_paths(conf):
            self.assertTrue(any(fnmatch.fnmatch(p, g) for g in patterns),
                            "%s is not rotated (patterns %s)" % (p, patterns))
        for d in ("daily", "rotate 14", "compress", "delaycompress", "missingok", "notifempty",
                  "sharedscripts"):
            self.assertIn(d, directives)
        self.assertIn(conf_setting(conf, "Pidfile"), script)
        self.assertIn("-USR1", script)

    def test_logrotate_debug_run(self):
        tool = harness.find_tool("logrotate")
        if tool is None:
            self.skipTest("logrotate not installed")
        with harness.TempDir() as tmp:
            logs = os.path.join(tmp.path, "log")
            os.makedirs(logs)
            for name in ("mainlog.ec", "events.json"):
                with open(os.path.join(logs, name), "w") as f:
                    f.write("x\n")
            snippet = os.path.join(tmp.path, "impetus")
            with open(snippet, "w") as f:
                f.write(read(DIST_LOGROTATE).replace(LOG + "/", logs + "/"))
            r = subprocess.run([tool, "-d", "-s", os.path.join(tmp.path, "state"), snippet],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotRegex(r.stdout + r.stderr, r"(?i)error")


class ManPageTest(unittest.TestCase):
    def test_render_without_warnings(self):
        groff = harness.find_tool("groff")
        if groff is None:
            self.skipTest("groff not installed")
        for page in MAN_PAGES:
            r = subprocess.run([groff, "-man", "-ww", "-z", page], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)

    def test_conf_page_lists_every_documented_option(self):
        doc = read(os.path.join(SRC, "docs", "configuration.md")).split("## Options", 1)[1]
        page = read(os.path.join(SRC, "man", "impetus.conf.5"))
        options = set()
        for row in re.findall(r"(?m)^\| (`[^|]+`) \|", doc):
            options.update(re.findall(r"`([A-Za-z_0-9]+)`", row))
        self.assertGreater(len(options), 60)
        missing = sorted(o for o in options if "\\fB%s\\fR" % o not in page)
        self.assertEqual(missing, [], "options of docs/configuration.md missing from "
                         "man/impetus.conf.5")

    def test_impetusd_page_lists_every_option(self):
        main_c = read(os.path.join(SRC, "src", "daemon", "main.c"))
        page = read(os.path.join(SRC, "man", "impetusd.8"))
        longopts = re.findall(r'\{ "([a-z-]+)", (?:no|required)_argument', main_c)
        self.assertGreater(len(longopts), 3)
        for name in longopts:
            self.assertIn("\\-\\-" + name.replace("-", "\\-"), page, "--" + name)

    def test_impetusctl_page_lists_every_verb_and_option(self):
        verbs_c = os.path.join(SRC, "src", "control", "control_verbs.c")
        ctl_c = os.path.join(SRC, "src", "tools", "impetusctl.c")
        if not (os.path.isfile(verbs_c) and os.path.isfile(ctl_c)):
            self.skipTest("the console is not in this tree")
        page = read(os.path.join(SRC, "man", "impetusctl.8"))
        verbs = re.findall(r'(?m)^\s*\{ "([a-z_]+)", "', read(verbs_c))
        self.assertGreater(len(verbs), 10)
        for verb in verbs:
            self.assertRegex(page, r"(?m)^\.(?:B|BR|BI)\b.*\b%s\b" % re.escape(verb),
                             "verb %r is not in man/impetusctl.8" % verb)
        letters = re.search(r'getopt\(argc, argv, "\+?([a-zA-Z:]+)"\)', read(ctl_c)).group(1)
        for letter in letters.replace(":", ""):
            self.assertIn("\\-" + letter, page, "option -%s" % letter)


if __name__ == "__main__":
    harness.main()
