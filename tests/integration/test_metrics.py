"""test_metrics.py: /metrics and /health of the real daemon (HTTP_Listener), end to end.

The daemon serves `HTTP_Listener { Listen "127.0.0.1:PORT" {} }`; mail is injected with
smtplib into its ESMTP listener, resolved through a real dnsmasq (harness.Dns) and
delivered to real smtp-sinks on 127.0.0.2 / 127.0.0.3 (one port, the daemon's
Remote_SMTP_Port). /metrics is scraped over HTTP and parsed strictly (parse_exposition:
the text exposition format 0.0.4, every line checked: HELP then TYPE before a family's
samples, families contiguous, metric and label names, label escapes, float values, no
duplicate series, counters named *_total, histogram buckets cumulative with
+Inf == _count), then its numbers are compared with what the sinks counted.

Covered:
  delivery   N messages to three domains: impetus_delivered_total == N == the sinks'
             message count; impetus_received_total == N; the per-domain delivered
             counters match each domain's count at the sinks and sum to N; the queues are
             empty afterwards; the spool sync histogram counted the commits; /health is
             200 "ok"; other paths 404; a POST is refused.
  failures   a domain whose MX refuses connections: the message stays in the delayed
             queue (global and per-domain gauges), connection failures are counted under
             cause="CONN_ERROR_CONNECT", transient failures are counted, nothing delivered.

Run:
    IMPETUSD=build/impetusd python3 tests/integration/test_metrics.py -v
"""

import http.client
import math
import re
import smtplib
import socket
import unittest

import harness

IMPETUSD = harness.require_impetusd()
harness.skip_unless("dnsmasq")
harness.skip_unless("smtp-sink")

SINK_ADDRS = ("127.0.0.2", "127.0.0.3")
HOSTS = {
    "h2.hosts.test": "127.0.0.2",
    "h3.hosts.test": "127.0.0.3",
    "h4.hosts.test": "127.0.0.4",        # no sink there: connection refused
}
MX = {
    "one.test": [(10, "h2.hosts.test")],
    "two.test": [(10, "h2.hosts.test")],
    "three.test": [(10, "h3.hosts.test")],
    "down.test": [(10, "h4.hosts.test")],
}
DNS = None


def setUpModule():
    global DNS
    DNS = harness.Dns(mx=MX, hosts=HOSTS, ttl=300)
    DNS.start()


def tearDownModule():
    if DNS is not None:
        DNS.close()


def config(listen_port, http_port, sink_port, dns_server):
    return """\
Spoolbase = "var/spool"
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
Relay_Hosts = ( "127.0.0.0/8" )
DNS_Servers = ( "%(dns)s" )
DNS_Timeout = 500
Remote_SMTP_Port = %(sink_port)d
Host_Failure_Retry = 1
Idle_Timeout = 2
ec_logger {
  Paniclog = "var/log/paniclog.ec"
  Mainlog = "var/log/mainlog.ec"
  Heartbeat = 0
}
ESMTP_Listener {
  Listen "127.0.0.1:%(listen)d" { }
}
HTTP_Listener {
  Listen "127.0.0.1:%(http)d" { }
}
""" % {"dns": dns_server, "sink_port": sink_port, "listen": listen_port, "http": http_port}


# ---------------------------------------------------------------------------------------
# The text exposition format, parsed strictly.

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABEL = r"(%s)=(%s)" % (LABEL_NAME, LABEL_VALUE)
SAMPLE_RE = re.compile(r"^(%s)(\{.*\})? (\S+)(?: (-?\d+))?$" % METRIC_NAME)
LABELS_RE = re.compile(r"^\{(?:%s(?:,%s)*,?)?\}$" % (LABEL, LABEL))
HELP_RE = re.compile(r"^# HELP (%s) (.+)$" % METRIC_NAME)
TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % METRIC_NAME)
LABEL_RE = re.compile(LABEL)
FLOAT_RE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$")


class ExpositionError(AssertionError):
    pass


def _unescape(value):
    out, i = [], 1
    while i < len(value) - 1:
        c = value[i]
        if c == "\\":
            i += 1
            c = {"\\": "\\", '"': '"', "n": "\n"}[value[i]]
        out.append(c)
        i += 1
    return "".join(out)


def parse_exposition(text):
    """{family: {"type", "help", "samples": [(name, labels dict, value)]}}, or ExpositionError."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition does not end with a newline")
    families = {}
    cur = None
    pending_help = None
    seen = set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d: %r" % (n, line)
        if line.startswith("#"):
            m = HELP_RE.match(line)
            if m:
                if pending_help is not None:
                    raise ExpositionError("%s: HELP after HELP" % where)
                pending_help = m.groups()
                continue
            m = TYPE_RE.match(line)
            if not m:
                raise ExpositionError("%s: a comment that is neither HELP nor TYPE" % where)
            name, typ = m.groups()
            if pending_help is None or pending_help[0] != name:
                raise ExpositionError("%s: TYPE without its HELP just before" % where)
            if name in families:
                raise ExpositionError("%s: family %s seen before (not contiguous)" % (where, name))
            if typ == "counter" and not name.endswith("_total"):
                raise ExpositionError("%s: counter without _total" % where)
            if cur is not None and families[cur]["type"] == "histogram":
                _check_histogram(cur, families[cur])
            families[name] = {"type": typ, "help": pending_help[1], "samples": []}
            cur, pending_help = name, None
            continue
        if pending_help is not None:
            raise ExpositionError("%s: HELP without TYPE" % where)
        m = SAMPLE_RE.match(line)
        if not m:
            raise ExpositionError("%s: not a sample line" % where)
        name, labeltext, value = m.group(1), m.group(2) or "", m.group(3)
        if labeltext and not LABELS_RE.match(labeltext):
            raise ExpositionError("%s: bad label set" % where)
        if not FLOAT_RE.match(value):
            raise ExpositionError("%s: bad value %r" % (where, value))
        labels = {}
        for lm in LABEL_RE.finditer(labeltext):
            if lm.group(1) in labels:
                raise ExpositionError("%s: label %s twice" % (where, lm.group(1)))
            labels[lm.group(1)] = _unescape(lm.group(2))
        if cur is None:
            raise ExpositionError("%s: sample before any TYPE" % where)
        fam = families[cur]
        allowed = {cur} if fam["type"] != "histogram" else {cur + "_bucket", cur + "_sum",
                                                           cur + "_count"}
        if name not in allowed:
            raise ExpositionError("%s: sample %s inside family %s" % (where, name, cur))
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ExpositionError("%s: duplicate series" % where)
        seen.add(key)
        v = float(value)
        if fam["type"] == "counter" and (v < 0 or math.isnan(v)):
            raise ExpositionError("%s: counter value %r" % (where, value))
        fam["samples"].append((name, labels, v))
    if pending_help is not None:
        raise ExpositionError("HELP %s at the end without TYPE" % pending_help[0])
    if cur is not None and families[cur]["type"] == "histogram":
        _check_histogram(cur, families[cur])
    return families


def _check_histogram(name, fam):
    buckets = [(s[1].get("le"), s[2]) for s in fam["samples"] if s[0] == name + "_bucket"]
    if not buckets or buckets[-1][0] != "+Inf":
        raise ExpositionError("histogram %s: no +Inf bucket last" % name)
    bounds = [float(le) for le, _ in buckets]
    if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
        raise ExpositionError("histogram %s: bounds not ascending: %r" % (name, bounds))
    counts = [v for _, v in buckets]
    if counts != sorted(counts):
        raise ExpositionError("histogram %s: buckets not cumulative: %r" % (name, counts))
    count = [s[2] for s in fam["samples"] if s[0] == name + "_count"]
    total = [s[2] for s in fam["samples"] if s[0] == name + "_sum"]
    if count != [counts[-1]] or len(total) != 1:
        raise ExpositionError("histogram %s: _count %r, +Inf %r, _sum %r"
                              % (name, count, counts[-1], total))


def value(families, name, **labels):
    """The value of one series; KeyError when it is missing."""
    fam = families.get(name)
    base = name
    if fam is None:
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in families:
                base = name[:-len(suffix)]
                fam = families[base]
    if fam is None:
        raise KeyError(name)
    for s in fam["samples"]:
        if s[0] == name and s[1] == labels:
            return s[2]
    raise KeyError("%s%r" % (name, labels))


# ---------------------------------------------------------------------------------------

class ParserSelfTest(unittest.TestCase):
    """The parser refuses what a Prometheus server would refuse."""

    GOOD = ('# HELP x_total h\n# TYPE x_total counter\nx_total{a="q\\"\\\\\\n",b=""} 3\n'
            '# HELP h s\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\n'
            'h_sum 0.7\nh_count 2\n')
    BAD = [
        "x 1\n",
        "# HELP x h\n# TYPE x gauge\nx 1",
        "# TYPE x gauge\nx 1\n",
        "# HELP x h\n# TYPE x counter\nx 1\n",
        '# HELP x h\n# TYPE x gauge\nx{a="\\t"} 1\n',
        "# HELP x h\n# TYPE x gauge\nx one\n",
        "# HELP x h\n# TYPE x gauge\nx 1\nx 1\n",
        "# HELP x h\n# TYPE x gauge\ny 1\n",
        "# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\n# HELP x h\n# TYPE x gauge\n",
        '# HELP h s\n# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
        '# HELP h s\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    ]

    def test_parser(self):
        fams = parse_exposition(self.GOOD)
        self.assertEqual(value(fams, "x_total", a='q"\\\n', b=""), 3)
        self.assertEqual(value(fams, "h_count"), 2)
        for i, text in enumerate(self.BAD):
            with self.assertRaises(ExpositionError, msg="bad case %d accepted: %r" % (i, text)):
                parse_exposition(text)


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.port = self.sink_port()
        self.sinks = {}
        for addr in SINK_ADDRS:
            s = harness.Sink(addr, port=self.port)
            s.start()
            self.addCleanup(s.close)
            self.sinks[addr] = s
        self.listen = harness.free_port()
        self.http = harness.free_port()
        while self.http == self.listen:
            self.http = harness.free_port()
        self.d = harness.Daemon(config(self.listen, self.http, self.port,
                                       "%s:%d" % (DNS.address, DNS.port)))
        self.addCleanup(self.d.close)
        self.d.start()
        harness.wait_until(lambda: harness.smtp_ready(("127.0.0.1", self.listen)), 10,
                           what="the daemon's ESMTP listener")
        harness.wait_until(lambda: self.get("/health", quiet=True), 10,
                           what="the daemon's HTTP listener on %d" % self.http)

    @staticmethod
    def sink_port():
        for _ in range(50):
            port = harness.free_port(SINK_ADDRS[0])
            try:
                for addr in SINK_ADDRS[1:]:
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                        s.bind((addr, port))
                return port
            except OSError:
                continue
        raise harness.HarnessError("no port free on all of %s" % (SINK_ADDRS,))

    def get(self, path, method="GET", quiet=False):
        """(status, content type, body) of one request, or None (quiet) if it failed."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
            try:
                conn.request(method, path)
                r = conn.getresponse()
                return r.status, r.getheader("Content-Type"), r.read().decode("utf-8")
            finally:
                conn.close()
        except OSError:
            if quiet:
                return None
            raise

    def scrape(self):
        status, ctype, body = self.get("/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        try:
            return parse_exposition(body)
        except ExpositionError as e:
            raise AssertionError("%s\n--- /metrics:\n%s" % (e, body))

    def send(self, rcpt, subject):
        msg = ("From: <alice@sender.test>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nbody of %s\r\n"
               % (rcpt, subject, subject))
        with smtplib.SMTP("127.0.0.1", self.listen, timeout=20) as s:
            s.sendmail("alice@sender.test", [rcpt], msg)

    def wait_metric(self, predicate, what, timeout=15):
        """The parsed scrape for which predicate(families) holds (polled)."""
        last = [None]

        def probe():
            last[0] = self.scrape()
            return last[0] if predicate(last[0]) else None
        try:
            return harness.wait_until(probe, timeout, interval=0.2, what=what)
        except harness.HarnessError:
            raise AssertionError("%s: not within %ss; last scrape: %r\n%s"
                                 % (what, timeout, last[0], self.d.diagnostics()))

    def test_delivery_counts_agree_with_the_sinks(self):
        per_domain = {"one.test": 5, "two.test": 3, "three.test": 4}
        n = sum(per_domain.values())
        for domain, count in sorted(per_domain.items()):
            for i in range(count):
                self.send("u%d@%s" % (i, domain), "metrics %s %d" % (domain, i))

        s2, s3 = self.sinks["127.0.0.2"], self.sinks["127.0.0.3"]
        s2.wait_for(per_domain["one.test"] + per_domain["two.test"], timeout=20)
        s3.wait_for(per_domain["three.test"], timeout=20)
        fams = self.wait_metric(lambda f: value(f, "impetus_delivered_total") >= n and
                                value(f, "impetus_queue_messages") == 0,
                                "%d delivered and the queues empty" % n)
        at_sinks = sum(len(s.messages()) for s in self.sinks.values())
        mesg = sum(s.counters()["mesg"] for s in self.sinks.values())
        self.assertEqual(at_sinks, n)
        self.assertEqual(mesg, n)
        self.assertEqual(value(fams, "impetus_delivered_total"), n)
        self.assertEqual(value(fams, "impetus_received_total"), n)
        # Every message came in its own smtplib session (at least n sessions).
        self.assertGreaterEqual(value(fams, "impetus_inbound_connections_total"), n)
        self.assertGreaterEqual(value(fams, "impetus_inbound_connections"), 0)
        self.assertEqual(value(fams, "impetus_permanent_failures_total"), 0)
        self.assertEqual(value(fams, "impetus_queue_active_messages"), 0)
        self.assertEqual(value(fams, "impetus_queue_delayed_messages"), 0)

        # Per domain: each counter matches that domain's arrivals at the sinks.
        arrived = {}
        for s in self.sinks.values():
            for m in s.messages():
                for r in m.rcpt_to:
                    d = r.rpartition("@")[2]
                    arrived[d] = arrived.get(d, 0) + 1
        self.assertEqual(arrived, per_domain)
        delivered = {s[1]["domain"]: s[2]
                     for s in fams["impetus_domain_delivered_total"]["samples"]}
        for domain, count in per_domain.items():
            self.assertEqual(delivered.get(domain), count, (domain, delivered))
        self.assertEqual(sum(delivered.values()), n)
        self.assertEqual(value(fams, "impetus_metrics_domains_folded"), 0)
        self.assertGreaterEqual(value(fams, "impetus_domains"), len(per_domain))

        # Every known cause is exported; none happened.
        causes = fams["impetus_outbound_connection_failures_by_cause_total"]["samples"]
        names = {s[1]["cause"] for s in causes}
        self.assertIn("CONN_ERROR_CONNECT", names)
        self.assertIn("CONN_ERROR_MX_LOOKUP_FAILED", names)
        self.assertEqual(sum(s[2] for s in causes if s[1]["cause"] != "CONN_ERROR_MX_LOOKUP_PENDING"),
                         0, causes)

        # The commits were synced: the histogram counted them.
        self.assertGreaterEqual(value(fams, "impetus_spool_sync_duration_seconds_count"), 1)
        self.assertEqual(value(fams, "impetus_spool_sync_duration_seconds_bucket", le="+Inf"),
                         value(fams, "impetus_spool_sync_duration_seconds_count"))
        self.assertEqual(value(fams, "impetus_binding_active_messages", binding="default"), 0)
        self.assertGreater(value(fams, "impetus_uptime_seconds"), 0)
        self.assertEqual(fams["impetus_delivered_total"]["type"], "counter")
        self.assertEqual(fams["impetus_queue_messages"]["type"], "gauge")
        self.assertEqual(fams["impetus_spool_sync_duration_seconds"]["type"], "histogram")

        # /health, a wrong path, a wrong method.
        self.assertEqual(self.get("/health")[0::2], (200, "ok\n"))
        self.assertEqual(self.get("/nothing")[0], 404)
        self.assertGreaterEqual(self.get("/metrics", method="POST")[0], 400)

    def test_connection_failures_and_delayed_gauges(self):
        self.send("x@down.test", "to a refusing MX")
        self.send("y@one.test", "to a sink")
        self.sinks["127.0.0.2"].wait_for(1, timeout=20)
        fams = self.wait_metric(
            lambda f: value(f, "impetus_outbound_connection_failures_by_cause_total",
                            cause="CONN_ERROR_CONNECT") >= 1 and
            value(f, "impetus_queue_delayed_messages") == 1 and
            value(f, "impetus_delivered_total") == 1,
            "a refused connection counted and the message delayed")
        self.assertEqual(value(fams, "impetus_domain_delayed_messages", domain="down.test"), 1)
        self.assertEqual(value(fams, "impetus_domain_delivered_total", domain="down.test"), 0)
        self.assertEqual(value(fams, "impetus_domain_delivered_total", domain="one.test"), 1)
        self.assertGreaterEqual(value(fams, "impetus_outbound_connection_failures_total"), 1)
        self.assertGreaterEqual(value(fams, "impetus_transient_failures_total"), 1)
        self.assertEqual(value(fams, "impetus_permanent_failures_total"), 0)
        self.assertEqual(value(fams, "impetus_queue_messages"), 1)
        self.assertEqual(sum(s.counters()["mesg"] for s in self.sinks.values()), 1)


if __name__ == "__main__":
    harness.main()
