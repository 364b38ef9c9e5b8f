"""test_delivery_volume.py: end-to-end delivery at volume, and the bounce of a 5xx at RCPT.

One daemon, dnsmasq, and smtp-sinks on loopback:
  volume  VOLUME_MESSAGES (default 10000) messages to 100 `.test` domains d1.test ...
          d100.test, whose MXs are 4 smtp-sinks on 127.0.0.2-5 (same port, the daemon's
          Remote_SMTP_Port), injected by VOLUME_SESSIONS (default 8) concurrent smtplib
          sessions (threads, each sending many messages). Every message carries a unique
          token in its Subject; each must arrive exactly once (the sinks' dump files), the
          mainlog must hold one D per message and no T or P, and the outbound sessions must
          be reused (the sinks' `sess` counters far below the message count). The injection
          and end-to-end rates are printed, not asserted.
  bounce  a remote MX (smtp-sink on 127.0.0.6) answering RCPT with 550 5.1.1: the mainlog
          gets P and the sender's domain (its MX: smtp-sink on 127.0.0.7) gets an RFC 3464
          report: multipart/report; report-type=delivery-status, a message/delivery-status
          part with Reporting-MTA, Final-Recipient, Action: failed, Status: 5.1.1,
          Diagnostic-Code: smtp; ..., and the original's headers.

Run:
    IMPETUSD=build/impetusd python3 tests/integration/test_delivery_volume.py -v
"""

import email
import os
import re
import smtplib
import socket
import sys
import threading
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()
harness.skip_unless("dnsmasq")
harness.skip_unless("smtp-sink")

N_MESSAGES = int(os.environ.get("VOLUME_MESSAGES", "10000"))
N_SESSIONS = int(os.environ.get("VOLUME_SESSIONS", "8"))
N_DOMAINS = 100
SINK_ADDRS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
REJECT_ADDR = "127.0.0.6"     # MX of reject.test: 550 to every RCPT
ORIGIN_ADDR = "127.0.0.7"     # MX of origin.test, the senders' domain
DELIVERY_DEADLINE_S = 150.0   # from the start of the injection to the last arrival
SESSIONS_MAX_FRACTION = 0.1   # sink sessions must stay below this share of the messages
IDLE_TIMEOUT_S = 2            # the daemon QUITs idle sessions after this long

CONF = """\
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
DNS_Servers = ( "%(dns)s" )
Remote_SMTP_Port = %(port)d
EHLO_Hostname = "impetus.test"
Retry_Interval = 2
Connect_Timeout = 10
Idle_Timeout = %(idle)d
ec_logger {
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/mainlog.ec"
  Heartbeat = 0
}
ESMTP_Listener {
  Relay_Hosts = ( "127.0.0.1/32" )
  Listen "127.0.0.1:%(listen)d" { }
}
"""


def common_port(addresses):
    """A TCP port free on every one of addresses."""
    for _ in range(100):
        port = harness.free_port(addresses[0])
        ok = True
        for a in addresses[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((a, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise harness.HarnessError("no port free on all of %s" % addresses)


def parse_mainlog(path):
    counts = {"R": 0, "D": 0, "T": 0, "P": 0}
    bad = []
    for line in harness._read(path).splitlines():
        f = line.split("@")
        if len(f) > 4 and f[4] in counts:
            counts[f[4]] += 1
            if f[4] in ("T", "P") and len(bad) < 10:
                bad.append(line)
    return counts, bad


SUBJECT_RE = re.compile(r"^Subject: (vol-\S+)$", re.M)


def tokens_in(dump_dir, seen):
    """Add the Subject tokens of every complete dump file not yet read; (files, errors)."""
    errors = []
    for name in os.listdir(dump_dir):
        path = os.path.join(dump_dir, name)
        if path in seen:
            continue
        try:
            if os.stat(path).st_size == 0:
                continue        # a transaction in progress (smtp-sink writes at the end)
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        if not text.endswith("\n"):
            continue
        seen[path] = SUBJECT_RE.findall(text)
        if len(seen[path]) != 1:
            errors.append("%s: %d tokens" % (path, len(seen[path])))
    return errors


class Env:
    def __init__(self):
        self.tmp = harness.TempDir(prefix="impetus-volume-")
        self.fixtures = []

    def up(self, fixture):
        fixture.start()
        self.fixtures.append(fixture)
        return fixture

    def start(self):
        port = common_port(SINK_ADDRS + [REJECT_ADDR, ORIGIN_ADDR])
        self.port = port
        self.sinks = []
        for i, a in enumerate(SINK_ADDRS):
            d = self.tmp.join("sink%d" % i)
            os.makedirs(d)
            self.sinks.append(self.up(harness.Sink(a, port=port, workdir=d,
                                                   hostname="mx%d.sinks.test" % i)))
        d = self.tmp.join("reject")
        os.makedirs(d)
        self.reject = self.up(harness.Sink(REJECT_ADDR, port=port, workdir=d,
                                           hard_fail=["RCPT"],
                                           hard_reply="550 5.1.1 <bob@reject.test>: "
                                                      "Recipient address rejected: "
                                                      "User unknown",
                                           hostname="mx.reject.test"))
        d = self.tmp.join("origin")
        os.makedirs(d)
        self.origin = self.up(harness.Sink(ORIGIN_ADDR, port=port, workdir=d,
                                           hostname="mx.origin.test"))
        mx = {"reject.test": "mx.reject.test", "origin.test": "mx.origin.test",
              "senders.test": "mx.origin.test"}
        hosts = {"mx.reject.test": REJECT_ADDR, "mx.origin.test": ORIGIN_ADDR}
        for i, a in enumerate(SINK_ADDRS):
            hosts["mx%d.sinks.test" % i] = a
        for k in range(1, N_DOMAINS + 1):
            mx["d%d.test" % k] = "mx%d.sinks.test" % (k % len(SINK_ADDRS))
        d = self.tmp.join("dns")
        os.makedirs(d)
        self.dns = self.up(harness.Dns(mx=mx, hosts=hosts, workdir=d))
        self.listen = harness.free_port()
        d = self.tmp.join("daemon")
        os.makedirs(d)
        conf = CONF % {"dns": "%s:%d" % (self.dns.address, self.dns.port), "port": port,
                       "listen": self.listen, "idle": IDLE_TIMEOUT_S}
        self.daemon = self.up(harness.Daemon(conf, workdir=d))
        self.mainlog = os.path.join(d, "var/log/mainlog.ec")
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.listen)), 15,
                           what="the daemon's listener")

    def close(self):
        for f in reversed(self.fixtures):
            try:
                f.close()
            except Exception:
                pass
        self.tmp.close()


ENV = None


def setUpModule():
    global ENV
    ENV = Env()
    try:
        ENV.start()
    except BaseException:
        ENV.close()
        raise


def tearDownModule():
    if ENV is None:
        return
    try:
        rc = ENV.daemon.stop(timeout=30)
        if rc != 0:
            sys.stderr.write("impetusd exited with %s\n%s\n" % (rc, ENV.daemon.diagnostics()))
    finally:
        ENV.close()


class Injector(threading.Thread):
    """One smtplib session sending the messages numbered first, first + step, ..."""

    def __init__(self, listen, first, step, total):
        super().__init__(daemon=True)
        self.listen, self.first, self.step, self.total = listen, first, step, total
        self.sent = 0
        self.error = None

    def run(self):
        try:
            with smtplib.SMTP("127.0.0.1", self.listen, timeout=60) as s:
                s.ehlo("injector.test")
                for n in range(self.first, self.total, self.step):
                    dom = "d%d.test" % (n % N_DOMAINS + 1)
                    token = "vol-%d" % n
                    msg = ("From: <s@senders.test>\r\nTo: <u%d@%s>\r\nSubject: %s\r\n"
                           "Message-ID: <%s@impetus.test>\r\n\r\n"
                           "message %d of the volume test\r\n" % (n, dom, token, token, n))
                    refused = s.sendmail("s@senders.test", ["u%d@%s" % (n, dom)],
                                         msg.encode())
                    if refused:
                        raise AssertionError("refused: %r" % refused)
                    self.sent += 1
        except Exception as e:  # reported by the test
            self.error = "%s: %s" % (type(e).__name__, e)


class DeliveryVolume(unittest.TestCase):
    def test_volume(self):
        """N messages to 100 domains over 4 sinks: each arrives exactly once, sessions are
        reused, one D per message and no T/P; rates printed."""
        t0 = time.monotonic()
        threads = [Injector(ENV.listen, i, N_SESSIONS, N_MESSAGES) for i in range(N_SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DELIVERY_DEADLINE_S)
        t_injected = time.monotonic()
        errors = [t.error for t in threads if t.error]
        sent = sum(t.sent for t in threads)
        self.assertFalse(errors, "injection failed: %s" % errors)
        self.assertEqual(sent, N_MESSAGES)

        def arrived():
            return sum(s.counters()["mesg"] for s in ENV.sinks)
        deadline = t0 + DELIVERY_DEADLINE_S
        while arrived() < N_MESSAGES and time.monotonic() < deadline:
            time.sleep(0.2)
        t_arrived = time.monotonic()
        n_arrived = arrived()
        # smtp-sink counts a session when it ends: the daemon's idle sessions QUIT after
        # IDLE_TIMEOUT_S. Wait for that (and for late duplicates).
        def settled():
            c = [s.counters() for s in ENV.sinks]
            return sum(x["sess"] for x in c) > 0 and all(x["sess"] == x["quit"] for x in c)
        time.sleep(IDLE_TIMEOUT_S + 1.0)
        try:
            harness.wait_until(settled, 10, what="the outbound sessions to end")
        except harness.HarnessError:
            pass            # reported below through the counters

        seen, bad = {}, []
        per_sink = []
        for s in ENV.sinks:
            before = len(seen)
            bad += tokens_in(s.dump_dir, seen)
            per_sink.append(len(seen) - before)
        counts = {}
        for toks in seen.values():
            for tok in toks:
                counts[tok] = counts.get(tok, 0) + 1
        dups = sorted(t for t, c in counts.items() if c > 1)
        missing = [n for n in range(N_MESSAGES) if "vol-%d" % n not in counts]
        sessions = [s.counters()["sess"] for s in ENV.sinks]
        mesgs = [s.counters()["mesg"] for s in ENV.sinks]
        inj_s = t_injected - t0
        e2e_s = t_arrived - t0
        sys.stderr.write(
            "\nvolume: %d messages, %d sessions in: injected in %.1fs (%.0f msg/s); "
            "arrived %d in %.1fs from the start (%.0f msg/s end to end)\n"
            "volume: per sink messages %s, sessions %s (%.1f messages per session)\n"
            % (N_MESSAGES, N_SESSIONS, inj_s, N_MESSAGES / inj_s, n_arrived, e2e_s,
               n_arrived / e2e_s, mesgs, sessions, sum(mesgs) / max(1, sum(sessions))))
        mainlog, tp = parse_mainlog(ENV.mainlog)
        sys.stderr.write("volume: mainlog %s\n" % mainlog)

        self.assertFalse(bad, "malformed dump files: %s" % bad[:10])
        self.assertFalse(dups, "%d message(s) delivered more than once, e.g. %s"
                         % (len(dups), dups[:10]))
        self.assertFalse(missing, "%d of %d message(s) not delivered within %.0fs, e.g. %s"
                         % (len(missing), N_MESSAGES, DELIVERY_DEADLINE_S, missing[:10]))
        self.assertEqual(len(counts), N_MESSAGES)
        self.assertEqual(sum(mesgs), N_MESSAGES, "smtp-sink counted %s messages" % mesgs)
        self.assertTrue(all(m > 0 for m in mesgs), "a sink got no mail: %s" % mesgs)
        self.assertGreater(sum(sessions), 0, "smtp-sink counted no finished session")
        self.assertLess(sum(sessions), N_MESSAGES * SESSIONS_MAX_FRACTION,
                        "sessions are not reused: %s sessions for %d messages"
                        % (sessions, N_MESSAGES))
        harness.wait_until(lambda: parse_mainlog(ENV.mainlog)[0]["D"] >= N_MESSAGES, 5,
                           what="%d D records" % N_MESSAGES)
        mainlog, tp = parse_mainlog(ENV.mainlog)
        self.assertEqual(mainlog["D"], N_MESSAGES, mainlog)
        self.assertEqual(mainlog["T"] + mainlog["P"], 0, "T/P records: %s" % tp)

    def test_zbounce_rcpt_5xx(self):
        """550 5.1.1 at RCPT: P in the mainlog and an RFC 3464 report at the sender's domain."""
        token = "bounce-token-%d" % os.getpid()
        msg = ("From: Alice <alice@origin.test>\r\nTo: <bob@reject.test>\r\n"
               "Subject: %s\r\nMessage-ID: <%s@origin.test>\r\nX-Original-Marker: kept\r\n\r\n"
               "this will be refused\r\n" % (token, token))
        with smtplib.SMTP("127.0.0.1", ENV.listen, timeout=30) as s:
            s.sendmail("alice@origin.test", ["bob@reject.test"], msg.encode())
        msgs = ENV.origin.wait_for(1, timeout=30)
        bounces = [m for m in msgs if token in m.data]
        self.assertEqual(len(bounces), 1, msgs)
        b = bounces[0]
        self.assertEqual(b.mail_from, "", "a bounce goes out with MAIL FROM:<>")
        self.assertEqual(b.rcpt_to, ["alice@origin.test"])
        m = b.message
        self.assertEqual(m.get_content_type(), "multipart/report", m.get("Content-Type"))
        self.assertEqual((m.get_param("report-type") or "").lower(), "delivery-status")
        self.assertTrue(m.get("From"), "no From header")
        self.assertTrue(m.get("Date"), "no Date header")
        self.assertIn("alice@origin.test", m.get("To", ""))
        parts = m.get_payload()
        types = [p.get_content_type() for p in parts]
        self.assertGreaterEqual(len(parts), 3, types)
        self.assertEqual(types[0], "text/plain", types)
        self.assertEqual(types[1], "message/delivery-status", types)
        self.assertIn(types[2], ("text/rfc822-headers", "message/rfc822"), types)
        # message/delivery-status: the per-message block, then one per recipient.
        blocks = parts[1].get_payload()
        self.assertIsInstance(blocks, list)
        self.assertGreaterEqual(len(blocks), 2, [b.items() for b in blocks])
        per_msg, per_rcpt = blocks[0], blocks[1]
        self.assertRegex(per_msg.get("Reporting-MTA", ""), r"(?i)^dns;\s*\S+")
        self.assertRegex(per_rcpt.get("Final-Recipient", ""), r"(?i)^rfc822;\s*bob@reject\.test$")
        self.assertEqual(per_rcpt.get("Action", "").strip().lower(), "failed")
        self.assertEqual(per_rcpt.get("Status", "").strip(), "5.1.1")
        diag = re.sub(r"\r?\n[ \t]+", " ", per_rcpt.get("Diagnostic-Code", ""))  # unfold
        self.assertRegex(diag, r"(?i)^smtp;\s*550 5\.1\.1 .*User unknown")
        if per_rcpt.get("Remote-MTA"):
            self.assertRegex(per_rcpt.get("Remote-MTA"), r"(?i)^dns;\s*\S+")
        orig = parts[2].get_payload()
        orig_text = orig if isinstance(orig, str) else "".join(p.as_string() for p in orig)
        self.assertIn(token, orig_text)
        self.assertIn("X-Original-Marker: kept", orig_text)
        self.assertIn("bob@reject.test", parts[0].get_payload())
        # The mainlog: P for bob, stage 4 (RCPT TO), the 550 as the reply.
        rec = harness.wait_until(
            lambda: [l for l in harness._read(ENV.mainlog).splitlines()
                     if "@P@reject.test@" in l], 5, what="the P record")
        self.assertEqual(len(rec), 1, rec)
        f = rec[0].split("@", 13)
        self.assertEqual(f[9], "4", rec[0])
        self.assertEqual(f[12], REJECT_ADDR, rec[0])
        self.assertTrue(f[13].startswith("550 5.1.1"), rec[0])
        self.assertEqual(ENV.reject.counters()["mesg"], 0)


if __name__ == "__main__":
    harness.main()
