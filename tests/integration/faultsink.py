#!/usr/bin/env python3
"""faultsink.py: a fault-injecting remote MX for tests of impetus's outbound SMTP client.

As a script (asyncio, Python 3 standard library only):

    python3 faultsink.py --listen 127.0.0.2:2525 [--listen 127.0.0.3:2525 ...]
        --rules rules.json --log events.jsonl [--tls-cert c.pem --tls-key k.pem]
        [--hostname mx.test]

binds every --listen address (loopback only: anything else exits with status 2), prints
"listening ADDR" per listener and then "ready" on stdout, and serves ESMTP until SIGTERM or
SIGINT. As a module: class FaultSink, a harness fixture that runs the script.

The server is a normal ESMTP receiver: EHLO advertises PIPELINING, SIZE 10485760, 8BITMIME,
SMTPUTF8, DSN, ENHANCEDSTATUSCODES (and STARTTLS when a certificate is given); HELO, MAIL,
RCPT, DATA, RSET, NOOP, VRFY, QUIT; pipelined input is read from one buffer, in order;
DATA is dot-unstuffed; each accepted transaction is logged. Every command received and
every reply sent is logged too, so a test can read the whole dialogue.

Rules (the --rules file: a JSON list of rule objects, or {"rules": [...], ...}; it is read
again at each new connection, so a session keeps the rules it started with):

    {"stage": S, "fault": F, "match": {...}, "times": N, "text": "...", "delay": seconds}

  stage  banner, ehlo (EHLO and HELO), starttls, mail, rcpt_first (the first RCPT of a
         transaction), rcpt_later (the others), data (the reply to DATA), body (while the
         client sends the body: the fault fires when the first body line arrives), dot (the
         reply to the final dot), quit.
  fault  4xx      "451 4.3.0 ..." instead of the normal reply; the command fails.
         5xx      "550 5.0.0 ..." ("550 5.1.1 User unknown" at rcpt stages, "554 5.0.0"
                  at the banner); the command fails.
         421      "421 4.3.2 ..." and the server closes the connection.
         garbage  a line that is not a reply ("HELLO THERE"); the command fails.
         partial  "25" (no line end), then nothing more: the client must time out.
         reset    the connection is closed abruptly (SO_LINGER 0: a TCP RST).
         stall    nothing is sent; the connection stays open until the client gives up.
                  At the body stage the server also stops reading, so the client's
                  writes block once the socket buffers are full (the sink then sees the
                  client give up only by a reset, or a FIN not stuck behind unsent data).
         none     the normal reply (with "delay": a slow server). At the ehlo stage it can
                  change the extensions: "size": N (SIZE N and a limit of N bytes, 0 = no
                  limit; null = SIZE not advertised, no limit), "without": ["PIPELINING",
                  ...] (keywords left out), "with": ["CHUNKING", ...] (lines added).
  At the body stage, 4xx / 5xx / garbage are sent as soon as the first body line arrives;
  the rest of the body is read and discarded and the final dot gets no other reply.
  After a failed banner every command but QUIT gets "503 5.5.1".
  match  optional; every key given must match: "listen" ("127.0.0.3:2525": one process
         serving as several MXs), "mail_from", "rcpt" (at rcpt stages the recipient of that
         command, at later stages any accepted recipient of the transaction). An address
         pattern is an exact address (case-insensitive) or a suffix starting with "@" or "."
         ("@d2.test"); a list of patterns matches if one does. "mail_from": "" is <>.
  times  apply to the first N matching occurrences only (counted across all sessions and
         listeners of the process; the counts start again when the file's content changes).
  text   the reply: a whole reply ("452 4.2.2 Mailbox full"; "\\n" separates the lines
         of a multi-line reply) or, without a leading code, the text after the fault's
         default code and enhanced status. For garbage the line sent, for partial the
         bytes sent.
  delay  seconds to wait before the fault (or the normal reply for "none").
  The first rule (in file order) that matches a stage and has uses left applies.

Log (--log): one JSON object per line, flushed at once, each with "t" (epoch seconds),
"type" and (for session events) "session" (1, 2, ... across all listeners):
  connect {peer, listen}, cmd {line, bare_lf?}, reply {text}, fault {stage, fault, rule},
  stall {stage}, ignored {bytes}, tls {version, cipher}, starttls_injection {bytes},
  message {mail_from, mail_params, rcpts, rcpt_params, data, size, bare_lf, helo, tls,
  peer, listen, queue_id}, rejected_message {... as message, and fault (a dot-stage
  fault: logged before it acts) or reply (over the SIZE limit)}, close {reason},
  rules {rules, generation}, rules_error {error}.
"data" is the dot-unstuffed body as received (CRLF line ends kept), decoded as UTF-8 with
surrogateescape: data.encode("utf-8", "surrogateescape") gives the exact bytes.

Error contract: bad arguments or a bad rules file at start-up exit with status 2 and a
message on stderr; a bad rules file later is logged (rules_error) and the last good rules
stay in force. FaultSink raises HarnessError when the server cannot start, ValueError for
bad rules or non-loopback addresses before anything is started.
"""

import argparse
import asyncio
import email
import hashlib
import itertools
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import sys
import time

import harness
from harness import HarnessError, _Fixture, _Proc, assert_loopback, free_port, wait_until

STAGES = ("banner", "ehlo", "starttls", "mail", "rcpt_first", "rcpt_later", "data", "body",
          "dot", "quit")
FAULTS = ("4xx", "5xx", "421", "garbage", "partial", "reset", "stall", "none")
RULE_KEYS = ("stage", "fault", "match", "times", "text", "delay", "size", "without", "with")
MATCH_KEYS = ("listen", "mail_from", "rcpt")
DEFAULT_SIZE = 10485760    # bytes: the advertised and enforced message size limit
MAX_LINE = 1 << 20         # bytes: the stream buffer limit (longer lines are still read)
HANGUP_POLL_S = 0.1        # seconds between checks for the client's close during a stall
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
SELF = os.path.abspath(__file__)


# ---------------------------------------------------------------------------------------
# Rules: validation and matching (shared by the server and the fixture).

def validate_rules(rules):
    """Return the rule list if it is well-formed; raise ValueError naming the bad rule."""
    if not isinstance(rules, list):
        raise ValueError("rules must be a list of objects, got %s" % type(rules).__name__)
    for i, rule in enumerate(rules):
        where = "rule %d (%r)" % (i, rule)
        if not isinstance(rule, dict):
            raise ValueError("%s: not an object" % where)
        unknown = set(rule) - set(RULE_KEYS)
        if unknown:
            raise ValueError("%s: unknown key(s) %s" % (where, ", ".join(sorted(unknown))))
        if rule.get("stage") not in STAGES:
            raise ValueError("%s: stage must be one of %s" % (where, ", ".join(STAGES)))
        if rule.get("fault") not in FAULTS:
            raise ValueError("%s: fault must be one of %s" % (where, ", ".join(FAULTS)))
        match = rule.get("match", {})
        if not isinstance(match, dict) or set(match) - set(MATCH_KEYS):
            raise ValueError("%s: match takes only %s" % (where, ", ".join(MATCH_KEYS)))
        for key, pattern in match.items():
            pats = pattern if isinstance(pattern, list) else [pattern]
            if not pats or not all(isinstance(p, str) for p in pats):
                raise ValueError("%s: match.%s must be a string or a list of strings"
                                 % (where, key))
        if "listen" in match:
            for p in (match["listen"] if isinstance(match["listen"], list)
                      else [match["listen"]]):
                parse_listen(p)
        times = rule.get("times")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool)
                                  or times < 0):
            raise ValueError("%s: times must be a non-negative integer" % where)
        if "text" in rule and not isinstance(rule["text"], str):
            raise ValueError("%s: text must be a string" % where)
        delay = rule.get("delay", 0)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise ValueError("%s: delay must be a non-negative number of seconds" % where)
        if any(k in rule for k in ("size", "without", "with")):
            if rule["stage"] != "ehlo" or rule["fault"] != "none":
                raise ValueError("%s: size / without / with belong to an ehlo rule with fault "
                                 "none" % where)
            size = rule.get("size", 0)
            if size is not None and (not isinstance(size, int) or size < 0):
                raise ValueError("%s: size must be a non-negative integer or null" % where)
            for k in ("without", "with"):
                v = rule.get(k, [])
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError("%s: %s must be a list of strings" % (where, k))
    return rules


def parse_listen(text):
    """(host, port) of "127.0.0.2:2525" or "[::1]:2525"; ValueError if not loopback."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise ValueError("bad listen address %r (want IP:PORT or [IPv6]:PORT)" % text)
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError("bad port in %r" % text)
    return assert_loopback(host), port


def format_listen(host, port):
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def _address_matches(pattern, address):
    if address is None:
        return False
    pats = pattern if isinstance(pattern, list) else [pattern]
    a = address.lower()
    for p in pats:
        p = p.lower()
        if p[:1] in ("@", ".") and a.endswith(p):
            return True
        if a == p:
            return True
    return False


def rule_matches(rule, stage, listen, mail_from, rcpts):
    """True if rule applies at stage for this listener / sender / recipients."""
    if rule["stage"] != stage:
        return False
    match = rule.get("match") or {}
    if "listen" in match:
        pats = match["listen"] if isinstance(match["listen"], list) else [match["listen"]]
        if not any(format_listen(*parse_listen(p)) == listen for p in pats):
            return False
    if "mail_from" in match and not _address_matches(match["mail_from"], mail_from):
        return False
    if "rcpt" in match and not any(_address_matches(match["rcpt"], r) for r in rcpts):
        return False
    return True


# ---------------------------------------------------------------------------------------
# The server.

class _Closed(Exception):
    """The session is over (the peer left, or a fault ended it); args[0] is the reason."""


def _reply_lines(text, default):
    """A reply (lines without CRLF) from a rule's text and the fault's default reply."""
    if text is None:
        text = default
    lines = text.replace("\r", "").split("\n")
    m = re.match(r"(\d{3})([ -]|$)", lines[0])
    if not m:
        code, _, rest = default.partition(" ")
        status = rest.split(" ", 1)[0] if re.match(r"\d\.\d+\.\d+ ", rest) else ""
        lines = [("%s %s %s" % (code, status, lines[0])).replace("  ", " ")] + lines[1:]
        m = re.match(r"(\d{3})", lines[0])
    code = m.group(1)
    out = []
    for i, line in enumerate(lines):
        body = re.sub(r"^\d{3}[ -]?", "", line) if re.match(r"\d{3}([ -]|$)", line) else line
        out.append("%s%s%s" % (code, " " if i == len(lines) - 1 else "-", body))
    return out


def _default_reply(fault, stage):
    if fault == "4xx":
        return "451 4.3.0 Temporary failure (faultsink)"
    if fault == "5xx":
        if stage in ("rcpt_first", "rcpt_later"):
            return "550 5.1.1 User unknown (faultsink)"
        if stage == "banner":
            return "554 5.0.0 Service refused (faultsink)"
        return "550 5.0.0 Permanent failure (faultsink)"
    return "421 4.3.2 Service shutting down (faultsink)"


def _parse_path(arg, keyword):
    """(address, params) of "FROM:<a@b> SIZE=1" for keyword "FROM"; None if malformed."""
    m = re.match(r"%s:\s*<([^<>]*)>\s*(.*)$" % keyword, arg, re.I)
    if not m:
        m = re.match(r"%s:\s*(\S+)\s*(.*)$" % keyword, arg, re.I)  # lenient: no brackets
        if not m or "<" in m.group(1) or ">" in m.group(1):
            return None
    addr = m.group(1)
    if ":" in addr and addr.startswith("@"):  # a source route: <@a,@b:user@d>
        addr = addr.split(":", 1)[1]
    return addr, m.group(2).strip()


class Server:
    """The listeners' shared state: rules, use counts, the event log, session numbers."""

    def __init__(self, rules_path, log_path, hostname, ssl_ctx):
        self.rules_path = rules_path
        self.hostname = hostname
        self.ssl_ctx = ssl_ctx
        self.log_file = open(log_path, "a", encoding="utf-8")
        self.sessions = itertools.count(1)
        self.rules_digest = None
        self.rules = []
        self.uses = {}          # (rules digest, rule index) -> times applied
        self.tasks = set()
        self.load_rules(initial=True)

    def log(self, type_, **fields):
        event = {"t": round(time.time(), 6), "type": type_}
        event.update(fields)
        self.log_file.write(json.dumps(event) + "\n")
        self.log_file.flush()

    def load_rules(self, initial=False):
        """Re-read the rules file if its content changed; (digest, rules) now in force."""
        try:
            with open(self.rules_path, "rb") as f:
                raw = f.read()
        except OSError as e:
            if initial:
                raise ValueError("cannot read rules file %s: %s" % (self.rules_path, e))
            self.log("rules_error", error=str(e))
            return self.rules_digest, self.rules
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self.rules_digest:
            return self.rules_digest, self.rules
        try:
            doc = json.loads(raw.decode("utf-8")) if raw.strip() else []
            generation = None
            if isinstance(doc, dict):
                generation = doc.get("generation")
                doc = doc.get("rules", [])
            rules = validate_rules(doc)
        except (ValueError, UnicodeDecodeError) as e:
            if initial:
                raise ValueError("rules file %s: %s" % (self.rules_path, e))
            self.log("rules_error", error=str(e))
            return self.rules_digest, self.rules
        self.rules_digest, self.rules = digest, rules
        self.log("rules", rules=rules, generation=generation)
        return digest, rules

    def pick(self, rules, stage, listen, mail_from, rcpts):
        """The first rule (index, rule) that applies and has uses left, counted; or None."""
        digest, rule_list = rules
        for i, rule in enumerate(rule_list):
            if not rule_matches(rule, stage, listen, mail_from, rcpts):
                continue
            key = (digest, i)
            used = self.uses.get(key, 0)
            times = rule.get("times")
            if times is not None and used >= times:
                continue
            self.uses[key] = used + 1
            return i, rule
        return None

    async def handle(self, reader, writer):
        local = writer.get_extra_info("sockname") or ("?", 0)
        listen = format_listen(local[0], local[1])
        task = asyncio.current_task()
        self.tasks.add(task)
        session = Session(self, reader, writer, listen, next(self.sessions))
        try:
            await session.run()
        finally:
            self.tasks.discard(task)


class Session:
    """One SMTP connection: its state machine, fault application and logging."""

    def __init__(self, server, reader, writer, listen, number):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.listen = listen            # "127.0.0.2:2525": the address the client reached
        self.number = number            # session number, process-wide
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = format_listen(peer[0], peer[1])
        self.rules = server.load_rules()
        self.helo = None                # the EHLO / HELO argument, None before a greeting
        self.tls = False                # STARTTLS done
        self.size_limit = DEFAULT_SIZE  # bytes, 0 = none
        self.greeting_refused = False   # the banner was a fault: only QUIT works
        self.txn_count = 0              # transactions started
        self.reset_txn()

    def reset_txn(self):
        self.mail_from = None           # None: no transaction
        self.mail_params = ""
        self.rcpts = []                 # accepted recipients
        self.rcpt_params = []
        self.rcpt_attempts = 0          # RCPT commands in this transaction

    def log(self, type_, **fields):
        self.server.log(type_, session=self.number, **fields)

    # --- I/O ----------------------------------------------------------------------------

    async def send(self, lines):
        """Send a reply (a list of lines, or one line) and log it."""
        if isinstance(lines, str):
            lines = [lines]
        await self.send_raw(("\r\n".join(lines) + "\r\n").encode("utf-8"))

    async def send_raw(self, data):
        self.log("reply", text=data.decode("utf-8", "backslashreplace"))
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise _Closed("write failed: %s" % e)

    async def readline(self):
        """One line including its LF, however long; _Closed at EOF."""
        parts = []
        while True:
            try:
                parts.append(await self.reader.readuntil(b"\n"))
                return b"".join(parts)
            except asyncio.LimitOverrunError as e:
                parts.append(await self.reader.readexactly(e.consumed))
            except asyncio.IncompleteReadError as e:
                if e.partial or parts:
                    self.log("partial_line", data=(b"".join(parts) + e.partial)
                             .decode("utf-8", "backslashreplace"))
                raise _Closed("peer closed")
            except (ConnectionError, OSError) as e:
                raise _Closed("read failed: %s" % e)

    async def close(self):
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, OSError, ssl.SSLError):
            pass

    def reset(self):
        """Close abruptly: SO_LINGER 0 turns the close into a TCP RST."""
        sock = self.writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.writer.transport.abort()

    async def stall(self, stage):
        """Send nothing until the client gives up; then _Closed."""
        self.log("stall", stage=stage)
        if stage == "body":
            # Stop reading, so the client's writes block once the buffers are full; watch
            # the socket for the client's close (POLLRDHUP is set even with unread data).
            self.writer.transport.pause_reading()
            poller = select.poll()
            poller.register(self.writer.get_extra_info("socket").fileno(),
                            POLLRDHUP | select.POLLHUP | select.POLLERR)
            while not poller.poll(0):
                await asyncio.sleep(HANGUP_POLL_S)
            raise _Closed("peer closed during stall")
        while True:
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, OSError) as e:
                raise _Closed("peer reset during stall: %s" % e)
            if not data:
                raise _Closed("peer closed during stall")
            self.log("ignored", bytes=len(data), data=data.decode("utf-8", "backslashreplace"))

    # --- faults -------------------------------------------------------------------------

    def pick(self, stage, rcpt=None):
        """The rule (index, rule) for stage now, counted as used; or None."""
        rcpts = [rcpt] if rcpt is not None else list(self.rcpts)
        return self.server.pick(self.rules, stage, self.listen, self.mail_from, rcpts)

    async def fault_at(self, stage, rcpt=None, picked=False):
        """Apply the rule for stage, if any (picked: the caller's pick() result): (failed,
        rule). failed: a fault reply was sent instead of the normal one. Faults that end
        the session raise _Closed."""
        if picked is False:
            picked = self.pick(stage, rcpt)
        if picked is None:
            return False, None
        index, rule = picked
        fault = rule["fault"]
        self.log("fault", stage=stage, fault=fault, rule=index)
        if rule.get("delay"):
            await asyncio.sleep(rule["delay"])
        if fault == "none":
            return False, rule
        if fault in ("4xx", "5xx"):
            await self.send(_reply_lines(rule.get("text"), _default_reply(fault, stage)))
            return True, rule
        if fault == "garbage":
            await self.send_raw((rule.get("text", "HELLO THERE") + "\r\n").encode("utf-8"))
            return True, rule
        if fault == "421":
            await self.send(_reply_lines(rule.get("text"), _default_reply(fault, stage)))
            await self.close()
            raise _Closed("421")
        if fault == "partial":
            await self.send_raw(rule.get("text", "25").encode("utf-8"))
            await self.stall(stage)
        if fault == "reset":
            self.log("reset", stage=stage)
            self.reset()
            raise _Closed("reset")
        await self.stall(stage)  # stall (and partial's tail) raise _Closed
        raise AssertionError("not reached")

    # --- the dialogue -------------------------------------------------------------------

    async def run(self):
        self.log("connect", peer=self.peer, listen=self.listen)
        reason = "?"
        try:
            failed, _ = await self.fault_at("banner")
            if failed:
                self.greeting_refused = True
            else:
                await self.send("220 %s ESMTP faultsink" % self.server.hostname)
            while True:
                line = await self.readline()
                text = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                event = {"line": text}
                if not line.endswith(b"\r\n"):
                    event["bare_lf"] = True
                self.log("cmd", **event)
                await self.command(text)
        except _Closed as e:
            reason = e.args[0] if e.args else "closed"
        except asyncio.CancelledError:
            reason = "server shutdown"
            raise
        except Exception as e:  # a bug here: log it, do not kill the server
            reason = "internal error: %r" % e
            sys.stderr.write("faultsink: session %d: %r\n" % (self.number, e))
        finally:
            self.log("close", reason=reason)
            if not self.writer.transport.is_closing():
                await self.close()

    async def command(self, text):
        verb, _, arg = text.strip().partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        if self.greeting_refused and verb != "QUIT":
            await self.send("503 5.5.1 Error: the greeting was refused, only QUIT")
            return
        handler = {"EHLO": self.cmd_ehlo, "HELO": self.cmd_helo, "STARTTLS": self.cmd_starttls,
                   "MAIL": self.cmd_mail, "RCPT": self.cmd_rcpt, "DATA": self.cmd_data,
                   "RSET": self.cmd_rset, "NOOP": self.cmd_noop, "QUIT": self.cmd_quit,
                   "VRFY": self.cmd_vrfy}.get(verb)
        if handler is None:
            await self.send("500 5.5.2 Error: command not recognized")
            return
        await handler(arg)

    def extensions(self, rule):
        size = DEFAULT_SIZE
        if rule is not None and "size" in rule:
            size = rule["size"]
        self.size_limit = size or 0
        ext = ["PIPELINING"]
        if size is not None:
            ext.append("SIZE %d" % size)
        ext += ["8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES"]
        if self.server.ssl_ctx is not None and not self.tls:
            ext.append("STARTTLS")
        if rule is not None:
            drop = {w.upper() for w in rule.get("without", [])}
            ext = [e for e in ext if e.split()[0].upper() not in drop]
            ext += rule.get("with", [])
        return ext

    async def cmd_ehlo(self, arg):
        if not arg:
            await self.send("501 5.5.4 Syntax: EHLO hostname")
            return
        failed, rule = await self.fault_at("ehlo")
        if failed:
            return
        self.helo = arg
        self.reset_txn()
        ext = self.extensions(rule)
        lines = [self.server.hostname] + ext
        await self.send(["250%s%s" % ("-" if i < len(lines) - 1 else " ", l)
                         for i, l in enumerate(lines)])

    async def cmd_helo(self, arg):
        if not arg:
            await self.send("501 5.5.4 Syntax: HELO hostname")
            return
        failed, _ = await self.fault_at("ehlo")
        if failed:
            return
        self.helo = arg
        self.size_limit = DEFAULT_SIZE
        self.reset_txn()
        await self.send("250 %s" % self.server.hostname)

    async def cmd_starttls(self, arg):
        if self.server.ssl_ctx is None:
            await self.send("502 5.5.1 Error: STARTTLS not offered")
            return
        if self.tls:
            await self.send("503 5.5.1 Error: TLS already active")
            return
        if arg:
            await self.send("501 5.5.4 Syntax: STARTTLS")
            return
        failed, _ = await self.fault_at("starttls")
        if failed:
            return
        # Plaintext pipelined after STARTTLS must not be taken as commands (CVE-2011-0411).
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            self.log("starttls_injection", bytes=len(buffered))
            del buffered[:]
        await self.send("220 2.0.0 Ready to start TLS")
        try:
            await self.writer.start_tls(self.server.ssl_ctx, ssl_handshake_timeout=30)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as e:
            raise _Closed("TLS handshake failed: %s" % e)
        obj = self.writer.get_extra_info("ssl_object")
        self.log("tls", version=obj.version() if obj else None,
                 cipher=obj.cipher()[0] if obj else None)
        self.tls = True
        self.helo = None
        self.reset_txn()

    async def cmd_mail(self, arg):
        if self.helo is None:
            await self.send("503 5.5.1 Error: send HELO/EHLO first")
            return
        if self.mail_from is not None:
            await self.send("503 5.5.1 Error: nested MAIL command")
            return
        parsed = _parse_path(arg, "FROM")
        if parsed is None:
            await self.send("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        addr, params = parsed
        m = re.search(r"(?:^|\s)SIZE=(\d+)", params, re.I)
        if m and self.size_limit and int(m.group(1)) > self.size_limit:
            await self.send("552 5.3.4 Message size exceeds fixed limit")
            return
        saved = self.mail_from
        self.mail_from = addr  # visible to the match of the mail stage
        failed, _ = await self.fault_at("mail")
        if failed:
            self.mail_from = saved
            return
        self.mail_params = params
        self.txn_count += 1
        await self.send("250 2.1.0 Ok")

    async def cmd_rcpt(self, arg):
        if self.mail_from is None:
            await self.send("503 5.5.1 Error: need MAIL command")
            return
        parsed = _parse_path(arg, "TO")
        if parsed is None or not parsed[0]:
            await self.send("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        addr, params = parsed
        stage = "rcpt_first" if self.rcpt_attempts == 0 else "rcpt_later"
        self.rcpt_attempts += 1
        failed, _ = await self.fault_at(stage, rcpt=addr)
        if failed:
            return
        self.rcpts.append(addr)
        self.rcpt_params.append(params)
        await self.send("250 2.1.5 Ok")

    async def cmd_data(self, arg):
        if self.mail_from is None:
            await self.send("503 5.5.1 Error: need MAIL command")
            return
        if not self.rcpts:
            await self.send("554 5.5.1 Error: no valid recipients")
            return
        failed, _ = await self.fault_at("data")
        if failed:
            return
        await self.send("354 End data with <CR><LF>.<CR><LF>")
        body = []
        size = 0
        bare_lf = False
        replied = False      # a body-stage fault already answered the transaction
        first = True
        while True:
            line = await self.readline()
            if first:
                first = False
                replied, _ = await self.fault_at("body")
            if line in (b".\r\n", b".\n"):
                if line == b".\n":
                    bare_lf = True
                break
            if replied:
                continue
            if not line.endswith(b"\r\n"):
                bare_lf = True
            if line.startswith(b"."):
                line = line[1:]
            body.append(line)
            size += len(line)
        data = b"".join(body)
        record = {"mail_from": self.mail_from, "mail_params": self.mail_params,
                  "rcpts": list(self.rcpts), "rcpt_params": list(self.rcpt_params),
                  "data": data.decode("utf-8", "surrogateescape"), "size": size,
                  "bare_lf": bare_lf, "helo": self.helo, "tls": self.tls, "peer": self.peer,
                  "listen": self.listen,
                  "queue_id": "FS%dT%d" % (self.number, self.txn_count)}
        if replied:
            self.reset_txn()
            return
        picked = self.pick("dot")
        if picked is not None and picked[1]["fault"] != "none":
            # Logged before the fault acts, so the log is complete when the client sees it.
            self.log("rejected_message", fault=picked[1]["fault"], **record)
        failed, _ = await self.fault_at("dot", picked=picked)
        if failed:
            self.reset_txn()
            return
        self.reset_txn()
        if self.size_limit and size > self.size_limit:
            reply = "552 5.3.4 Message size exceeds fixed limit"
            self.log("rejected_message", reply=reply, **record)
            await self.send(reply)
            return
        self.log("message", **record)
        await self.send("250 2.0.0 Ok: queued as %s" % record["queue_id"])

    async def cmd_rset(self, arg):
        self.reset_txn()
        await self.send("250 2.0.0 Ok")

    async def cmd_noop(self, arg):
        await self.send("250 2.0.0 Ok")

    async def cmd_vrfy(self, arg):
        await self.send("252 2.0.0 Cannot VRFY, send some mail")

    async def cmd_quit(self, arg):
        failed, _ = await self.fault_at("quit")
        if failed:
            return
        await self.send("221 2.0.0 Bye")
        await self.close()
        raise _Closed("quit")


async def serve(listens, server):
    """Bind every listener, print ready, serve until SIGTERM / SIGINT / SIGHUP."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    servers = []
    for host, port in listens:
        srv = await asyncio.start_server(server.handle, host, port, limit=MAX_LINE,
                                         reuse_address=True)
        servers.append(srv)
        # Port 0 is the kernel's choice: sessions name their listener by the socket's
        # local address, which is also what match.listen compares with.
        print("listening %s" % format_listen(*srv.sockets[0].getsockname()[:2]))
    print("ready", flush=True)
    await stop.wait()
    for srv in servers:
        srv.close()
    for task in list(server.tasks):
        task.cancel()
    await asyncio.gather(*server.tasks, return_exceptions=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A fault-injecting SMTP server (loopback only).")
    ap.add_argument("--listen", action="append", required=True,
                    help="IP:PORT or [IPv6]:PORT on loopback (repeatable)")
    ap.add_argument("--rules", required=True, help="JSON rules file (re-read per connection)")
    ap.add_argument("--log", required=True, help="JSON-lines event log (appended)")
    ap.add_argument("--tls-cert", help="PEM certificate: offer STARTTLS")
    ap.add_argument("--tls-key", help="PEM key for --tls-cert")
    ap.add_argument("--hostname", default="mx.test", help="name in the banner and EHLO")
    args = ap.parse_args(argv)
    try:
        listens = [parse_listen(s) for s in args.listen]
    except ValueError as e:
        sys.stderr.write("faultsink: %s\n" % e)
        return 2
    ssl_ctx = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            sys.stderr.write("faultsink: --tls-cert and --tls-key go together\n")
            return 2
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("faultsink: cannot load the certificate: %s\n" % e)
            return 2
    try:
        server = Server(args.rules, args.log, args.hostname, ssl_ctx)
    except (ValueError, OSError) as e:
        sys.stderr.write("faultsink: %s\n" % e)
        return 2
    try:
        asyncio.run(serve(listens, server))
    except OSError as e:
        sys.stderr.write("faultsink: cannot listen: %s\n" % e)
        return 1
    return 0


# ---------------------------------------------------------------------------------------
# The fixture.

class FaultMessage:
    """One accepted transaction: mail_from, mail_params, rcpts (rcpt_to), rcpt_params,
    data (str, CRLF line ends, dot-unstuffed), size (bytes), bare_lf, helo, tls, peer,
    listen ("127.0.0.2:2525"), session, queue_id; message (parsed), subject."""

    def __init__(self, event):
        self.event = event
        for key in ("mail_from", "mail_params", "rcpts", "rcpt_params", "data", "size",
                    "bare_lf", "helo", "tls", "peer", "listen", "session", "queue_id"):
            setattr(self, key, event.get(key))
        self.rcpt_to = self.rcpts
        self.message = email.message_from_string(self.data.replace("\r\n", "\n"))

    @property
    def subject(self):
        return self.message.get("Subject")

    @property
    def data_bytes(self):
        return self.data.encode("utf-8", "surrogateescape")

    def __repr__(self):
        return "FaultMessage(session=%r, listen=%r, from=%r, to=%r, size=%r)" % (
            self.session, self.listen, self.mail_from, self.rcpts, self.size)


class FaultSink(_Fixture):
    """faultsink.py on one port of one or more loopback addresses.

        with FaultSink(["127.0.0.2", "127.0.0.3"], rules=[
                {"stage": "rcpt_first", "fault": "5xx", "match": {"rcpt": "@d2.test"}},
                {"stage": "dot", "fault": "reset", "times": 1,
                 "match": {"listen": "127.0.0.3"}}]) as sink:   # port filled in at start
            ...; sink.wait_for(1); sink.set_rules([])

    addresses: one address or a list (loopback only); port=None picks one free on all of
    them. A match.listen without a port gets this sink's port. Attributes: address, port
    (the first listener), listens ["127.0.0.2:PORT", ...], server ((address, port)),
    log_path, rules_path.
    """

    def __init__(self, addresses="127.0.0.2", port=None, rules=(), *, tls_cert=None,
                 tls_key=None, hostname="mx.sink.test", workdir=None):
        super().__init__(workdir, "impetus-faultsink-")
        if isinstance(addresses, str):
            addresses = [addresses]
        self.addresses = [assert_loopback(a) for a in addresses]
        if not self.addresses:
            raise ValueError("FaultSink needs at least one address")
        self.address = self.addresses[0]
        self._fixed_port = port
        self.port = port
        self.hostname = hostname
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self._rules = list(rules)
        self._generation = 0
        validate_rules(self._with_port(self._rules, 0))
        self.dir = os.path.join(self.workdir, "faultsink-%s" % self.address.replace(":", "_"))
        os.makedirs(self.dir, exist_ok=True)
        self.rules_path = os.path.join(self.dir, "rules.json")
        self.log_path = os.path.join(self.dir, "events.jsonl")
        self.stdout_path = os.path.join(self.dir, "faultsink.out")
        self.stderr_path = os.path.join(self.dir, "faultsink.err")

    @property
    def server(self):
        """(host, port) for smtplib.SMTP(*sink.server)."""
        return (self.address, self.port)

    @property
    def listens(self):
        return [format_listen(a, self.port) for a in self.addresses]

    def _with_port(self, rules, port):
        """Rules with "listen" patterns lacking a port completed with port."""
        out = []
        for rule in rules:
            match = rule.get("match") if isinstance(rule, dict) else None
            if isinstance(match, dict) and "listen" in match:
                rule = dict(rule, match=dict(match))
                pats = match["listen"]
                fixed = [p if (not isinstance(p, str) or re.search(r"(\]|^[^:]*):\d+$", p))
                         else format_listen(assert_loopback(p.strip("[]")), port)
                         for p in (pats if isinstance(pats, list) else [pats])]
                rule["match"]["listen"] = fixed if isinstance(pats, list) else fixed[0]
            out.append(rule)
        return out

    def _write_rules(self):
        rules = validate_rules(self._with_port(self._rules, self.port or 0))
        self._generation += 1
        tmp = self.rules_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"generation": self._generation, "rules": rules}, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.rules_path)

    def set_rules(self, rules):
        """Replace the rules (and restart their use counts); new connections see them."""
        validate_rules(self._with_port(list(rules), self.port or 0))
        self._rules = list(rules)
        self._write_rules()

    def _pick_port(self):
        for _ in range(50):
            port = free_port(self.addresses[0])
            ok = True
            for a in self.addresses[1:]:
                family = socket.AF_INET6 if ":" in a else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    try:
                        s.bind((a, port))
                    except OSError:
                        ok = False
                        break
            if ok:
                return port
        raise HarnessError("no port free on all of %s" % ", ".join(self.addresses))

    def start(self):
        for attempt in range(5):
            if self._fixed_port is None:
                self.port = self._pick_port()
            self._write_rules()
            for p in (self.log_path, self.stdout_path, self.stderr_path):
                if os.path.exists(p):
                    os.unlink(p)
            open(self.log_path, "w").close()
            argv = [sys.executable, SELF, "--rules", self.rules_path, "--log", self.log_path,
                    "--hostname", self.hostname]
            for listen in self.listens:
                argv += ["--listen", listen]
            if self.tls_cert:
                argv += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
            self.proc = _Proc(argv, "faultsink", cwd=self.dir, stdout_path=self.stdout_path,
                              stderr_path=self.stderr_path)
            deadline = time.monotonic() + harness.START_TIMEOUT_S
            while self.proc.running() and time.monotonic() < deadline:
                if "ready" in harness._read(self.stdout_path).split("\n"):
                    return self
                time.sleep(0.02)
            self.proc.stop()
            diag = self.diagnostics()
            if self._fixed_port is None and "in use" in diag.lower():
                continue
            raise HarnessError("faultsink did not start on %s\n%s"
                               % (", ".join(self.listens), diag))
        raise HarnessError("faultsink: no usable port after 5 attempts")

    def events(self, type_=None, session=None):
        """The logged events (dicts), oldest first; only one type / session if given."""
        out = []
        text = harness._read(self.log_path)
        for line in text.split("\n")[:-1]:  # the last piece is "" or a line being written
            if not line:
                continue
            event = json.loads(line)
            if type_ is not None and event.get("type") != type_:
                continue
            if session is not None and event.get("session") != session:
                continue
            out.append(event)
        return out

    def messages(self):
        """Accepted transactions so far, oldest first (FaultMessage)."""
        return [FaultMessage(e) for e in self.events("message")]

    def sessions(self):
        """How many connections were accepted so far."""
        return len(self.events("connect"))

    def transcript(self, session):
        """The dialogue of one session: ["S: 220 ...", "C: EHLO x", ...]."""
        out = []
        for e in self.events(session=session):
            if e["type"] == "cmd":
                out.append("C: " + e["line"])
            elif e["type"] == "reply":
                out.append("S: " + e["text"].rstrip("\r\n"))
            elif e["type"] in ("fault", "stall", "close", "reset", "tls"):
                out.append("-- %s %s" % (e["type"], json.dumps(
                    {k: v for k, v in e.items() if k not in ("t", "type", "session")})))
        return out

    def wait_for(self, n, timeout=10.0):
        """Wait until at least n messages were accepted; return messages()."""
        try:
            return wait_until(lambda: (lambda m: m if len(m) >= n else None)(self.messages()),
                              timeout, what="%d message(s) at the fault sink" % n)
        except HarnessError:
            raise HarnessError("faultsink %s: wanted %d message(s), have %r\n%s"
                               % (", ".join(self.listens), n, self.messages(),
                                  self.diagnostics()))

    def wait_closed(self, session, timeout=10.0):
        """Wait until the session's close event is logged; return its reason."""
        return wait_until(lambda: next((e["reason"] for e in self.events("close", session)),
                                       None), timeout, what="session %d closed" % session)

    def diagnostics(self):
        tail = harness._tail(harness._read(self.log_path), 40)
        return ("--- faultsink stderr:\n%s\n--- faultsink events (last 40):\n%s"
                % (harness._tail(harness._read(self.stderr_path)), tail))


if __name__ == "__main__":
    sys.exit(main())
