"""test_fault_matrix.py: the outbound fault matrix, stages x faults, against the real daemon.

One daemon, one dnsmasq, two fault sinks (faultsink.py: one plain, one offering STARTTLS
with a throw-away certificate), a good MX and a bounce MX (smtp-sink). Every cell is its own
`.test` domain whose MX is its own listener address of a fault sink (rules are matched by
listen address, so all cells run concurrently); the cell's one message (two recipients for
rcpt_later) is injected over SMTP and its fate is read from the mainlog (R/D/T/P), the fault
sinks' event logs and the bounce sink:

  delivered  one D on the first attempt, no T or P, the message at the MX exactly once
  retried    T (stage of the fault) and then D once the rule's `times` (1) is used up
             (Retry_Interval = 1 s), the message at the MX exactly once
  bounced    P (stage of the fault, first attempt) and an RFC 3464 report at the
             sender's domain (bounces.test, smtp-sink)
  next_mx    the cell's domain has two MXs, the faulty one at preference 10 and a good one
             at 20: the message reaches the good one exactly once (D with its address), the
             faulty one never accepts it and is not retried in a loop
  (rcpt_later splits: the first recipient is delivered at once, the second has the fate.)

Expected fates follow the daemon's documented semantics (queue_outcome.c, outbound.c,
smtp_client.c): 2xx -> D; 4xx or a broken session (421, garbage, partial reply, reset,
stall -> timeout) -> T and a retry; 5xx -> P and a bounce; a session that fails before it
is ready (banner, EHLO, STARTTLS) -> the address is avoided for Host_Failure_Retry and the
next MX is tried; a fault after the final 250 (at QUIT) does not touch the delivery. With
`TLS = ifavailable`, a 4xx/5xx refusal of STARTTLS leaves the session usable in plain text:
the message must still be delivered (in plain text on that MX, or by the next MX), without
reconnecting in a loop.

Per-stage timeouts are 2 s, so partial and stall cells end quickly. Run:
    IMPETUSD=build/impetusd python3 tests/integration/test_fault_matrix.py -v
"""

import email
import os
import re
import smtplib
import subprocess
import sys
import time
import unittest

import harness
from faultsink import FaultSink

IMPETUSD = harness.require_impetusd()
harness.skip_unless("dnsmasq")
harness.skip_unless("smtp-sink")
OPENSSL = harness.skip_unless("openssl")

STAGES = ("banner", "ehlo", "starttls", "mail", "rcpt_first", "rcpt_later", "data", "body",
          "dot", "quit")
FAULTS = ("4xx", "5xx", "421", "garbage", "partial", "reset", "stall")
TIMEOUT_S = 2            # every per-stage timeout of the daemon
SETTLE_S = 60.0          # the longest the cells may take, from the injection
GRACE_S = 3.0            # once every cell looks final: wait this long for late surprises
STORM_CAP = 40           # `times` of the next-MX rules: a reconnect loop ends after this
STORM_MAX = 3            # sessions to a faulty MX beyond which a cell has looped

GOOD_ADDR = "127.0.0.50"      # the good MX (pref 20) of the next-MX cells: a fault sink
BOUNCE_ADDR = "127.0.0.51"    # MX of bounces.test, the senders' domain: smtp-sink
SENDER_DOMAIN = "bounces.test"

# Connection stage codes (docs/logs.md) of a T/P record per fault stage.
STAGE_CODES = {"mail": {2}, "rcpt_first": {4}, "rcpt_later": {4}, "data": {6},
               "body": {8, 9}, "dot": {9}}


def expected_fate(stage, fault):
    if stage in ("banner", "ehlo"):
        return "next_mx"
    if stage == "starttls":
        return "delivered_plain_or_next" if fault in ("4xx", "5xx") else "next_mx"
    if stage == "quit":
        return "delivered"
    if fault == "5xx":
        return "bounced"
    return "retried"


class Cell:
    def __init__(self, index, stage, fault, single=False):
        self.stage, self.fault = stage, fault
        suffix = "-1mx" if single else ""
        self.name = "%s_%s%s" % (stage, fault, suffix.replace("-", "_"))
        self.domain = "c-%s-%s%s.test" % (stage.replace("_", "-"), fault, suffix)
        self.mx = "mx-%s-%s%s.test" % (stage.replace("_", "-"), fault, suffix)
        self.tls = stage == "starttls"
        self.addr = "127.0.0.%d" % index
        self.single = single
        if fault == "none":
            self.fate = "delivered"
        elif single:
            # The only MX fails its greeting once: avoided for Host_Failure_Retry, the
            # message waits (T) and the next attempt delivers it.
            self.fate = "retried"
        else:
            self.fate = expected_fate(stage, fault)
        self.rcpts = ["u1@" + self.domain]
        if stage == "rcpt_later":
            self.rcpts.append("u2@" + self.domain)
        self.sender = "s-%s@%s" % (self.name.replace("_", "-"), SENDER_DOMAIN)
        self.token = "tok-%s-%d" % (self.name, os.getpid())
        self.two_mx = self.fate in ("next_mx", "delivered_plain_or_next")

    def rule(self):
        if self.fault == "none":
            return None
        rule = {"stage": self.stage, "fault": self.fault, "match": {"listen": self.addr}}
        if self.two_mx:
            rule["times"] = STORM_CAP
        elif self.single and self.stage == "ehlo" and self.fault == "5xx":
            rule["times"] = 2       # EHLO and then HELO refused
        elif self.stage != "quit":
            rule["times"] = 1
        return rule

    def message(self):
        return ("From: <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@impetus.test>\r\n\r\n"
                "fault matrix cell %s\r\n.a line with a leading dot\r\nend\r\n"
                % (self.sender, ", ".join("<%s>" % r for r in self.rcpts), self.token,
                   self.token, self.name))


def build_cells():
    cells = []
    n = 60
    for stage in STAGES:
        for fault in FAULTS:
            cells.append(Cell(n, stage, fault))
            n += 1
    cells.append(Cell(n, "mail", "none"))         # baseline: plain delivery
    cells.append(Cell(n + 1, "starttls", "none"))  # baseline: delivery over TLS
    # A greeting failure at a domain's only MX: T, then delivered once the MX is usable.
    for i, (stage, fault) in enumerate((("banner", "421"), ("banner", "reset"),
                                        ("ehlo", "stall"), ("banner", "4xx"), ("ehlo", "5xx"))):
        cells.append(Cell(n + 2 + i, stage, fault, single=True))
    return cells


CELLS = build_cells()


def make_cert(tmp):
    cert, key = tmp.join("cert.pem"), tmp.join("key.pem")
    r = subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=mx.tls.test", "-keyout", key, "-out", cert],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise harness.HarnessError("openssl req failed:\n%s" % r.stdout.decode(errors="replace"))
    return cert, key


CONF = """\
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
DNS_Servers = ( "%(dns)s" )
Remote_SMTP_Port = %(port)d
EHLO_Hostname = "impetus.test"
Retry_Interval = 1
Max_Retry_Interval = 2
Host_Failure_Retry = 1
Connect_Timeout = %(t)d
EHLO_Timeout = %(t)d
MailFrom_Timeout = %(t)d
RcptTo_Timeout = %(t)d
Data_Timeout = %(t)d
Body_Timeout = %(t)d
Idle_Timeout = 1
TLS = ifavailable
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


# ---------------------------------------------------------------------------------------
# Reading the results.

def parse_mainlog(text):
    """{msgid: rcpt} from R records, and the D/T/P records as dicts."""
    rcpt_of, records = {}, []
    for line in text.splitlines():
        f = line.split("@")
        if len(f) < 5:
            continue
        kind = f[4]
        if kind == "R" and len(f) >= 14:
            rcpt_of[f[1]] = "%s@%s" % (f[5], f[6])
        elif kind == "D" and len(f) >= 12:
            records.append({"type": "D", "msgid": f[1], "domain": f[5], "retries": int(f[9]),
                            "ip": f[11], "line": line})
        elif kind in ("T", "P"):
            f = line.split("@", 13)
            if len(f) < 14:
                continue
            records.append({"type": kind, "msgid": f[1], "domain": f[5], "stage": int(f[9]),
                            "retries": int(f[10]), "ip": f[12], "reply": f[13], "line": line})
    return rcpt_of, records


class Snapshot:
    """Everything the checks look at, read at one time."""

    def __init__(self, env):
        rcpt_of, records = parse_mainlog(harness._read(env.mainlog))
        self.by_rcpt = {}
        for r in records:
            rcpt = rcpt_of.get(r["msgid"])
            if rcpt is not None:
                self.by_rcpt.setdefault(rcpt.lower(), []).append(r)
        self.events = {}            # listen address (no port) -> events
        for sink in (env.plain, env.tls):
            for e in sink.events():
                listen = e.get("listen")
                if listen is None and "session" in e:
                    listen = env.session_listen.get((id(sink), e["session"]))
                if e.get("type") == "connect":
                    env.session_listen[(id(sink), e["session"])] = e["listen"]
                    listen = e["listen"]
                if listen is None:
                    continue
                self.events.setdefault(listen.rsplit(":", 1)[0], []).append(e)
        self.bounces = []
        for m in env.bounce_sink.messages():
            self.bounces.append(m)

    def accepted(self, addr, token):
        """{rcpt: times} of messages with token accepted by the listener at addr."""
        out = {}
        for e in self.events.get(addr, []):
            if e["type"] == "message" and token in e["data"]:
                for r in e["rcpts"]:
                    out[r.lower()] = out.get(r.lower(), 0) + 1
        return out

    def sessions(self, addr):
        return sum(1 for e in self.events.get(addr, []) if e["type"] == "connect")

    def faults(self, addr, stage):
        return sum(1 for e in self.events.get(addr, [])
                   if e["type"] == "fault" and e["stage"] == stage)

    def used_tls(self, addr, token):
        return any(e["type"] == "message" and token in e["data"] and e.get("tls")
                   for e in self.events.get(addr, []))

    def bounces_for(self, cell):
        return [m for m in self.bounces if cell.token in m.data]


def recs(snap, rcpt, kind):
    return [r for r in snap.by_rcpt.get(rcpt.lower(), []) if r["type"] == kind]


def check_rcpt(cell, snap, rcpt, fate):
    """Problems (strings) with one recipient's fate; [] when it is as expected."""
    probs = []
    D, T, P = (recs(snap, rcpt, k) for k in "DTP")
    at_mx = snap.accepted(cell.addr, cell.token).get(rcpt.lower(), 0)
    at_good = snap.accepted(GOOD_ADDR, cell.token).get(rcpt.lower(), 0)
    codes = STAGE_CODES.get(cell.stage)
    if fate == "delivered":
        if len(D) != 1 or D[0]["retries"] != 0 or T or P:
            probs.append("want one D on the first attempt and no T/P, mainlog has D=%d T=%d P=%d"
                         % (len(D), len(T), len(P)))
        if at_mx != 1:
            probs.append("accepted %d time(s) by the MX %s, want 1" % (at_mx, cell.addr))
        elif cell.tls and not snap.used_tls(cell.addr, cell.token):
            probs.append("delivered in plain text although the MX offers STARTTLS "
                         "(TLS = ifavailable)")
    elif fate == "retried":
        if P:
            probs.append("P record(s) (want T then D): %s" % [r["line"] for r in P])
        if not T:
            probs.append("no T record (want T, then D on a retry)")
        elif codes and any(r["stage"] not in codes for r in T):
            probs.append("T record stage %s, want one of %s"
                         % ([r["stage"] for r in T], sorted(codes)))
        if len(D) != 1:
            probs.append("%d D record(s), want 1 after the retry" % len(D))
        elif D[0]["retries"] < 1:
            probs.append("D record on the first attempt (retries 0): the fault did not count")
        if at_mx != 1:
            probs.append("accepted %d time(s) by the MX %s, want exactly 1" % (at_mx, cell.addr))
        if cell.single and snap.sessions(cell.addr) > STORM_MAX:
            probs.append("%d sessions to the MX %s (want <= %d): the daemon reconnects at once "
                         "to a host whose greeting failed" % (snap.sessions(cell.addr),
                                                              cell.addr, STORM_MAX))
    elif fate == "bounced":
        if D or T:
            probs.append("want only P, mainlog has D=%d T=%d" % (len(D), len(T)))
        if len(P) != 1:
            probs.append("%d P record(s), want 1" % len(P))
        else:
            if codes and P[0]["stage"] not in codes:
                probs.append("P record stage %d, want one of %s" % (P[0]["stage"], sorted(codes)))
            if not P[0]["reply"].startswith("5"):
                probs.append("P record reply %r is not the 5xx" % P[0]["reply"])
        if at_mx:
            probs.append("accepted %d time(s) by the MX although refused" % at_mx)
        bounces = [m for m in snap.bounces_for(cell) if rcpt.lower() in m.data.lower()]
        if len(bounces) != 1:
            probs.append("%d bounce(s) for %s at %s, want 1" % (len(bounces), rcpt,
                                                               SENDER_DOMAIN))
        else:
            probs += check_bounce(bounces[0], cell, rcpt)
    elif fate in ("next_mx", "delivered_plain_or_next"):
        sessions = snap.sessions(cell.addr)
        if P:
            probs.append("P record(s): %s" % [r["line"] for r in P])
        if len(D) != 1:
            probs.append("%d D record(s), want 1" % len(D))
        if fate == "next_mx":
            if at_good != 1 or at_mx:
                probs.append("accepted by the good MX %s %d time(s) and by the faulty MX %s %d "
                             "time(s); want the good one once, the faulty one never (after %d "
                             "session(s) to the faulty MX)" % (GOOD_ADDR, at_good, cell.addr,
                                                               at_mx, sessions))
            elif D and D[0]["ip"] != GOOD_ADDR:
                probs.append("D record names %s, want the good MX %s" % (D[0]["ip"], GOOD_ADDR))
        else:
            if at_good + at_mx != 1:
                probs.append("accepted %d time(s) (good MX %d, faulty MX %d), want exactly once"
                             % (at_good + at_mx, at_good, at_mx))
            if at_mx and snap.used_tls(cell.addr, cell.token):
                probs.append("delivered over TLS to the MX that refused STARTTLS: its refusal "
                             "was only worked around after %d reconnect(s)" % sessions)
        if sessions > STORM_MAX:
            probs.append("%d sessions to the faulty MX %s (want <= %d): the daemon reconnects "
                         "to a host whose greeting failed instead of avoiding it"
                         % (sessions, cell.addr, STORM_MAX))
    return probs


def check_bounce(m, cell, rcpt):
    """An RFC 3464 report for rcpt of cell (m: a harness.SinkMessage)."""
    probs = []
    msg = m.message
    if m.mail_from not in ("", None):
        probs.append("bounce MAIL FROM <%s>, want <>" % m.mail_from)
    if [r.lower() for r in m.rcpt_to] != [cell.sender.lower()]:
        probs.append("bounce sent to %s, want %s" % (m.rcpt_to, cell.sender))
    if msg.get_content_type() != "multipart/report" or \
            (msg.get_param("report-type") or "").lower() != "delivery-status":
        probs.append("bounce Content-Type %r, want multipart/report; report-type=delivery-status"
                     % msg.get("Content-Type"))
        return probs
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    if len(parts) < 2 or types[1] != "message/delivery-status":
        probs.append("bounce parts %s, want text/plain, message/delivery-status, ..." % types)
        return probs
    ds = parts[1].get_payload()
    blocks = [b.items() for b in ds] if isinstance(ds, list) else []
    fields = {}
    for b in blocks:
        for k, v in b:
            fields.setdefault(k.lower(), []).append(v)
    if not any(v.lower().startswith("dns;") for v in fields.get("reporting-mta", [])):
        probs.append("no Reporting-MTA: dns; ...")
    if not any(rcpt.lower() in v.lower() for v in fields.get("final-recipient", [])):
        probs.append("no Final-Recipient for %s: %s" % (rcpt, fields.get("final-recipient")))
    if [v.strip().lower() for v in fields.get("action", [])] != ["failed"]:
        probs.append("Action %s, want [failed]" % fields.get("action"))
    if not all(re.match(r"5\.\d+\.\d+$", v.strip()) for v in fields.get("status", ["?"])):
        probs.append("Status %s, want 5.x.x" % fields.get("status"))
    if not any(v.lower().startswith("smtp;") for v in fields.get("diagnostic-code", [])):
        probs.append("no Diagnostic-Code: smtp; ...: %s" % fields.get("diagnostic-code"))
    if len(parts) < 3 or parts[2].get_content_type() not in ("text/rfc822-headers",
                                                            "message/rfc822"):
        probs.append("no original headers part: %s" % types)
    elif cell.token not in parts[2].as_string():
        probs.append("the original's part does not hold its Subject")
    return probs


def check_cell(cell, snap):
    probs = []
    if cell.stage == "rcpt_later" and cell.fault != "none":
        # The first recipient is accepted; the second RCPT gets the fault. A fault that
        # ends the session (421, garbage, partial, reset, stall) leaves both undelivered.
        first, second = cell.rcpts
        if cell.fault in ("4xx", "5xx"):
            probs += ["%s: %s" % (first, p) for p in check_rcpt(cell, snap, first, "delivered")]
        else:
            probs += ["%s: %s" % (first, p) for p in check_rcpt(cell, snap, first, "retried")]
        probs += ["%s: %s" % (second, p) for p in check_rcpt(cell, snap, second, cell.fate)]
    else:
        for r in cell.rcpts:
            probs += check_rcpt(cell, snap, r, cell.fate)
    if cell.fault != "none" and snap.faults(cell.addr, cell.stage) == 0:
        probs.append("the fault never fired (%d session(s) to %s)"
                     % (snap.sessions(cell.addr), cell.addr))
    return probs


# ---------------------------------------------------------------------------------------
# The environment: started once, all cells injected at once.

class Env:
    def __init__(self):
        self.tmp = harness.TempDir(prefix="impetus-matrix-")
        self.fixtures = []
        self.session_listen = {}
        self.results = None
        self.elapsed = None

    def start(self):
        for d in ("plain", "tls", "bounce", "dns", "daemon"):
            os.makedirs(self.tmp.join(d))
        cert, key = make_cert(self.tmp)
        plain = [c for c in CELLS if not c.tls]
        tls = [c for c in CELLS if c.tls]
        self.plain = self._up(FaultSink([c.addr for c in plain] + [GOOD_ADDR],
                                        rules=[c.rule() for c in plain if c.rule()],
                                        hostname="mx.plain.test",
                                        workdir=self.tmp.join("plain")))
        port = self.plain.port
        self.tls = self._up(FaultSink([c.addr for c in tls], port=port,
                                      rules=[c.rule() for c in tls if c.rule()],
                                      tls_cert=cert, tls_key=key, hostname="mx.tls.test",
                                      workdir=self.tmp.join("tls")))
        self.bounce_sink = self._up(harness.Sink(BOUNCE_ADDR, port=port,
                                                 workdir=self.tmp.join("bounce")))
        mx, hosts = {SENDER_DOMAIN: [(10, "mx.bounces.test")]}, {"mx.bounces.test": BOUNCE_ADDR,
                                                                "good.mx.test": GOOD_ADDR}
        for c in CELLS:
            mx[c.domain] = [(10, c.mx)] + ([(20, "good.mx.test")] if c.two_mx else [])
            hosts[c.mx] = c.addr
        self.dns = self._up(harness.Dns(mx=mx, hosts=hosts, workdir=self.tmp.join("dns")))
        self.listen = harness.free_port()
        conf = CONF % {"dns": "%s:%d" % (self.dns.address, self.dns.port), "port": port,
                       "t": TIMEOUT_S, "listen": self.listen}
        self.daemon = self._up(harness.Daemon(conf, workdir=self.tmp.join("daemon")))
        self.mainlog = os.path.join(self.daemon.workdir, "var/log/mainlog.ec")
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.listen)), 15,
                           what="the daemon's listener")

    def _up(self, fixture):
        fixture.start()
        self.fixtures.append(fixture)
        return fixture

    def inject(self):
        with smtplib.SMTP("127.0.0.1", self.listen, timeout=30) as s:
            s.ehlo("client.test")
            for c in CELLS:
                s.sendmail(c.sender, c.rcpts, c.message().encode())

    def settle(self):
        """Poll until every cell looks final (then a grace period) or SETTLE_S passes."""
        t0 = time.monotonic()
        deadline = t0 + SETTLE_S
        calm_since = None
        while True:
            snap = Snapshot(self)
            results = {c.name: check_cell(c, snap) for c in CELLS}
            now = time.monotonic()
            if all(not p for p in results.values()):
                calm_since = calm_since or now
                if now - calm_since >= GRACE_S:
                    break
            else:
                calm_since = None
            if now >= deadline:
                break
            time.sleep(0.5)
        self.results = results
        self.snap = snap
        self.elapsed = time.monotonic() - t0

    def close(self):
        for f in reversed(self.fixtures):
            try:
                f.close()
            except Exception:
                pass
        self.tmp.close()


ENV = None


class FaultMatrix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global ENV
        ENV = Env()
        try:
            ENV.start()
            ENV.inject()
            ENV.settle()
        except BaseException:
            ENV.close()
            raise
        sys.stderr.write("\nfault matrix: cells settled after %.1fs\n" % ENV.elapsed)
        width = max(len(c.name) for c in CELLS)
        for c in CELLS:
            probs = ENV.results[c.name]
            sys.stderr.write("  %-*s  %-24s %s\n" % (width, c.name, c.fate,
                                                     "ok" if not probs else "FAIL: " + probs[0]))

    @classmethod
    def tearDownClass(cls):
        if ENV is None:
            return
        try:
            rc = ENV.daemon.stop(timeout=40)
            cls.daemon_rc = rc
        finally:
            if os.environ.get("MATRIX_DUMP"):
                sys.stderr.write(harness._read(ENV.mainlog))
            ENV.close()

    def check(self, cell):
        probs = ENV.results[cell.name]
        if probs:
            snap = ENV.snap
            mainlog = [r["line"] for rc in cell.rcpts for r in snap.by_rcpt.get(rc.lower(), [])]
            self.fail("cell %s (expected fate: %s):\n  %s\nmainlog:\n  %s"
                      % (cell.name, cell.fate, "\n  ".join(probs),
                         "\n  ".join(mainlog[:12]) or "(no D/T/P records)"))

    def test_zz_daemon_alive(self):
        """The daemon survived the matrix (no crash) and wrote no assertion to the paniclog."""
        self.assertTrue(ENV.daemon.running(), ENV.daemon.diagnostics())
        self.assertNotIn("[assert]", ENV.daemon.paniclog())
        self.assertNotIn("[fatal]", ENV.daemon.paniclog())


def _make_test(cell):
    def test(self):
        self.check(cell)
    test.__doc__ = "%s x %s -> %s" % (cell.stage, cell.fault, cell.fate)
    return test


for _cell in CELLS:
    setattr(FaultMatrix, "test_%s" % _cell.name, _make_test(_cell))


if __name__ == "__main__":
    harness.main()
