"""test_crash.py: SIGKILL at random moments while clients inject; nothing acknowledged is lost.

Each cycle starts impetusd on the same spool, runs several SMTP clients that send messages as
fast as they can, and kills the daemon with SIGKILL after a random delay. Every message that got
a 250 must then be in the spool, intact (its body carries a token that must be there), and
`impetus-spool check` must find no corrupt file: a message killed before its 250 leaves at most
a temporary file that the next start removes. The next cycle's start reads the spool back.

CRASH_CYCLES sets the number of cycles (default 4; 40 with IMPETUS_LONG=1).
"""

import os
import random
import re
import signal
import smtplib
import subprocess
import threading
import time
import unittest

import harness

IMPETUSD = harness.require_impetusd()
SPOOL_TOOL = os.path.join(os.path.dirname(IMPETUSD), "impetus-spool")
CYCLES = int(os.environ.get("CRASH_CYCLES", "40" if os.environ.get("IMPETUS_LONG") == "1" else "4"))
CLIENTS = 4

CONF = """\
Spoolbase = "var/spool"
# Reception tests: mail stays in the spool to be inspected (no delivery attempts).
Suspend_Delivery = true
Pidfile = "var/run/impetusd.pid"
Event_Loops = 2
ec_logger { Paniclog = "var/log/paniclog.ec" }
ESMTP_Listener {
  Relay_Domains = ( "crash.test" )
  Listen "127.0.0.1:%d" { }
}
"""


class Injector(threading.Thread):
    """Sends messages until the server goes away; records what was acknowledged."""

    def __init__(self, port, tag):
        super().__init__(daemon=True)
        self.port, self.tag = port, tag
        self.acked = {}             # batch id -> token
        self.stop = False

    def run(self):
        n = 0
        while not self.stop:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as c:
                    c.ehlo("crash.client.test")
                    while not self.stop:
                        n += 1
                        token = "token-%s-%d-%d" % (self.tag, n, random.randrange(1 << 30))
                        rcpts = ["r%d@crash.test" % i for i in range(1 + n % 3)]
                        body = ("Subject: %s\r\n\r\n" % token) + ("line of %s\r\n" % token) * (1 + n % 40)
                        code, _ = c.mail("s@client.test")
                        if code != 250:
                            break
                        for r in rcpts:
                            c.rcpt(r)
                        code, resp = c.data(body.encode())
                        if code == 250:
                            m = re.search(rb"queued as (\S+)", resp)
                            self.acked[m.group(1).decode()] = token
            except (OSError, smtplib.SMTPException, EOFError):
                if self.stop:
                    return
                time.sleep(0.05)


class CrashTest(unittest.TestCase):
    def spool_list(self, workdir):
        out = subprocess.run([SPOOL_TOOL, "list", os.path.join(workdir, "var/spool")],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        return {line.split()[1] for line in out.stdout.splitlines() if line.strip()}

    def spool_check(self, workdir):
        out = subprocess.run([SPOOL_TOOL, "check", os.path.join(workdir, "var/spool")],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, "corrupt spool files:\n" + out.stdout + out.stderr)

    def spool_body_has(self, workdir, batch_id, token):
        out = subprocess.run([SPOOL_TOOL, "show", batch_id, os.path.join(workdir, "var/spool")],
                             capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and token in out.stdout

    def test_sigkill_cycles_lose_nothing_acknowledged(self):
        port = harness.free_port()
        workdir = harness.TempDir(prefix="impetus-crash-")
        self.addCleanup(workdir.close)
        all_acked = {}
        for cycle in range(CYCLES):
            d = harness.Daemon(CONF % port, workdir=workdir.path, conf_name="c%d.conf" % cycle)
            self.addCleanup(d.close)
            mark = len(d.paniclog())        # the paniclog grows across cycles
            d.start()
            d.wait_log("started", since=mark)
            d.wait_log("spool: .* read back", timeout=30, since=mark)
            clients = [Injector(port, "%d.%d" % (cycle, i)) for i in range(CLIENTS)]
            for c in clients:
                c.start()
            time.sleep(random.uniform(0.3, 1.5))
            d.signal(signal.SIGKILL)
            d.wait(timeout=15)
            for c in clients:
                c.stop = True
            for c in clients:
                c.join(timeout=15)
                all_acked.update(c.acked)
            os.unlink(d.pidfile) if os.path.exists(d.pidfile) else None

            listed = self.spool_list(workdir.path)
            missing = [b for b in all_acked if b not in listed]
            self.assertEqual(missing, [], "cycle %d: acknowledged batches missing from the spool" % cycle)
            self.spool_check(workdir.path)
        self.assertGreater(len(all_acked), 0, "no message was acknowledged at all")
        sample = random.sample(sorted(all_acked), min(30, len(all_acked)))
        for b in sample:
            self.assertTrue(self.spool_body_has(workdir.path, b, all_acked[b]),
                            "batch %s does not hold its body" % b)
        # A stop that arrives while the spool is still being read back is clean.
        for i in range(3):
            d = harness.Daemon(CONF % port, workdir=workdir.path, conf_name="quick%d.conf" % i)
            self.addCleanup(d.close)
            d.start()
            self.assertEqual(d.stop(), 0, "stop during the start-up scan:\n" + d.diagnostics())
        # A last start reads everything back, quarantines nothing, and stops cleanly.
        d = harness.Daemon(CONF % port, workdir=workdir.path, conf_name="final.conf")
        self.addCleanup(d.close)
        mark = len(d.paniclog())
        d.start()
        line = d.wait_log(r"spool: (\d+) recipient-messages in (\d+) batches read back; (\d+) files quarantined",
                          timeout=60, since=mark)
        self.assertGreaterEqual(int(line.group(2)), len(all_acked))
        self.assertEqual(line.group(3), "0", d.paniclog())
        self.assertEqual(d.stop(), 0, d.diagnostics())
        print("  %d cycles, %d acknowledged batches, all present" % (CYCLES, len(all_acked)))


if __name__ == "__main__":
    harness.main()
