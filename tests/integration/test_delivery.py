"""Delivery end to end: ringmaild delivering to scripted SMTP servers found through a real
DNS server (NSD), with retries, expiry, DSNs, connection reuse, per-destination limits,
a relayhost with AUTH, SMTPUTF8 and local mailboxes.

Set-up (mx_harness.py): one NSD per test class serving ZONES below; every test starts its
own FakeMx group (one shared port on several 127.0.0.x addresses, ringmaild's
[delivery] smtp_port) and its own ringmaild with short timeouts and a 1 s retry schedule.
Notices (DSNs) are ordinary queued mail to the original sender: every sender here is
@sender.test, whose MX is the FakeMx on 127.0.0.5, so the test reads the notices there
and parses them with Python's email package (mx_harness.parse_dsn).

What happened to each recipient is read from <data_dir>/log/delivery.jsonl, polled with
bounded loops. Every wait is bounded and scaled with harness.t().

Two tests reproduce open daemon bugs and fail until they are fixed:
test_bounces_at_several_domains_share_one_notice (one failure notice per destination
instead of per message) and test_connection_closed_by_server_while_idle_is_not_reused
(a connection the server already closed is reused; the message waits a retry interval).
"""
from __future__ import annotations

import datetime
import email.utils
import json
import os
import sys
import threading
import time
import unittest

import harness
from harness import Daemon, HOSTNAME, dot_stuff, t
from mx_harness import Behaviour, MxGroup, Nsd, parse_dsn, xtext_decode

SENDER = "alice@sender.test"
SENDER_MX = "127.0.0.5"

ZONES = {
    # Where notices go: the original sender's domain.
    "sender.test": ["@ MX 10 mx", "mx A 127.0.0.5"],
    # MX preference: 10 -> 127.0.0.2, 20 -> 127.0.0.3. The variants' preferred host is
    # not listening (.6), answers 421 at the greeting (.7) or drops at the greeting (.8).
    "pref.test": ["@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.2", "mx2 A 127.0.0.3"],
    "prefdown.test": ["@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.6", "mx2 A 127.0.0.3"],
    "pref421.test": ["@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.7", "mx2 A 127.0.0.3"],
    "prefdrop.test": ["@ MX 10 mx1", "@ MX 20 mx2", "mx1 A 127.0.0.8", "mx2 A 127.0.0.3"],
    # DNS outcomes: implicit MX (A only), null MX, NXDOMAIN (missing.nx.test). A domain
    # NSD does not serve (unserved.example) is answered REFUSED.
    "implicit.test": ["@ A 127.0.0.4"],
    "nullmx.test": ["@ MX 0 ."],
    "nx.test": ["@ A 127.0.0.1"],
    # One destination per scenario.
    "dest.test": ["@ MX 10 mx", "mx A 127.0.0.10"],
    "dsn.test": ["@ MX 10 mx", "mx A 127.0.0.11"],
    "nodsn.test": ["@ MX 10 mx", "mx A 127.0.0.12"],
    "reuse.test": ["@ MX 10 mx", "mx A 127.0.0.13"],
    "slow.test": ["@ MX 10 mx", "mx A 127.0.0.14"],
    "fast.test": ["@ MX 10 mx", "mx A 127.0.0.15"],
    "split.test": ["@ MX 10 mx", "mx A 127.0.0.16"],
    "drop.test": ["@ MX 10 mx", "mx A 127.0.0.17"],
    "stall.test": ["@ MX 10 mx", "mx A 127.0.0.18"],
    "relay.test": ["@ MX 10 mx", "mx A 127.0.0.19"],   # never used: the relayhost wins
    "utf8.test": ["@ MX 10 mx", "mx A 127.0.0.21"],
    "tls.test": ["@ MX 10 mx", "mx A 127.0.0.22"],
    "notls.test": ["@ MX 10 mx", "mx A 127.0.0.23"],
    "reqtls.test": ["@ MX 10 mx", "mx A 127.0.0.24"],
}
RELAYHOST = "127.0.0.20"


def message(tag: str, extra_headers: str = "") -> bytes:
    return (f"From: Alice <{SENDER}>\r\nTo: someone\r\nSubject: test {tag}\r\n"
            f"Message-ID: <{tag}@client.test>\r\n{extra_headers}\r\n"
            f"Body of {tag}.\r\n.a line with a leading dot\r\nlast line\r\n").encode("utf-8")


def parse_time(s: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def email_date(value: str):
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class Timeline:
    """When each transaction ran (MAIL received .. final dot read), per FakeMx connection
    thread. FakeMx.max_concurrent counts a connection as open until its server thread has
    closed it, which can be a moment after our 221 reached the client and the client's
    next connection was accepted; transactions, ordered by cause and effect, cannot
    overlap that way unless the client really used two connections at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans: list[list] = []   # [thread id, start, end or None]

    def behaviour(self, **kw) -> Behaviour:
        def mail(_addr):
            with self.lock:
                self.spans.append([threading.get_ident(), time.monotonic(), None])
            return (250, "2.1.0 sender OK")

        def data(_msg):
            me = threading.get_ident()
            with self.lock:
                for span in reversed(self.spans):
                    if span[0] == me and span[2] is None:
                        span[2] = time.monotonic()
                        break
            return (250, "2.0.0 OK queued as FAKE")
        return Behaviour(mail_reply=mail, data_reply=data, **kw)

    def max_overlap(self) -> int:
        """The most connections that had a transaction going at the same moment."""
        with self.lock:
            marks = []
            for tid, start, end in self.spans:
                marks.append((start, 1, tid))
                marks.append((end if end is not None else float("inf"), -1, tid))
        marks.sort(key=lambda m: (m[0], m[1]))   # an end before a start at the same time
        open_, best = {}, 0
        for _, step, tid in marks:
            open_[tid] = open_.get(tid, 0) + step
            best = max(best, sum(1 for v in open_.values() if v > 0))
        return best


class DeliveryCase(unittest.TestCase):
    """One NSD per class; each test its own FakeMx group and daemon (see start())."""

    ns: Nsd

    @classmethod
    def setUpClass(cls):
        cls.ns = Nsd(ZONES)
        cls.ns.start()

    @classmethod
    def tearDownClass(cls):
        cls.ns.close()

    def setUp(self):
        self.groups: list[MxGroup] = []

    def tearDown(self):
        for g in self.groups:
            for mx in g:
                self.assertEqual(mx.errors, [], f"FakeMx {mx.host} internal errors")

    # --- set-up -----------------------------------------------------------------------
    def start(self, hosts: dict, delivery=None, idle_timeout: float | None = None):
        """A FakeMx group on `hosts` (the sender's MX is always added) and a daemon
        delivering to it; `delivery` overrides [delivery] keys (a dict, or a function of
        the group's port returning one). Cleanups stop the daemon first (it checks its
        exit code and sanitizer reports), then the group."""
        spec = dict(hosts)
        spec.setdefault(SENDER_MX, None)
        mxs = MxGroup(spec, idle_timeout=idle_timeout)
        mxs.start()
        self.addCleanup(mxs.stop)
        self.groups.append(mxs)
        conf = {"smtp_port": mxs.port, "retry_intervals": ["1s"], "max_lifetime": "120s",
                "delay_notice_after": "1h", "command_timeout": "2s", "data_timeout": "3s",
                "connect_timeout": "2s", "tls": "none"}
        conf.update((delivery(mxs.port) if callable(delivery) else delivery) or {})
        d = Daemon(trusted_networks=["127.0.0.0/8"], delivery=conf,
                   dns={"servers": [self.ns.server], "timeout": "1s", "attempts": 1})
        d.start()
        self.addCleanup(d.close)
        return d, mxs

    # --- submitting -------------------------------------------------------------------
    def submit(self, d: Daemon, rcpts, sender: str = SENDER, body: bytes | None = None,
               mail_params: str = "", rcpt_params=None, conn=None) -> str:
        """One message over SMTP; returns its queue id. rcpt_params: a string for every
        RCPT, or {address: params}. With conn: on that open (EHLO'd) session."""
        own = conn is None
        c = conn or d.session()
        try:
            c.cmd(f"MAIL FROM:<{sender}>" + (f" {mail_params}" if mail_params else ""),
                  expect=250)
            for r in rcpts:
                p = rcpt_params.get(r, "") if isinstance(rcpt_params, dict) else (rcpt_params or "")
                c.cmd(f"RCPT TO:<{r}>" + (f" {p}" if p else ""), expect=250)
            c.cmd("DATA", expect=354)
            c.send(dot_stuff(body if body is not None else message("m")) + b".\r\n")
            reply = c.read_reply()
            self.assertEqual(reply.code, 250, f"message not accepted: {reply!r}")
            self.assertIsNotNone(reply.queue_id, f"no queue id in {reply!r}")
            if own:
                c.cmd("QUIT")
            return reply.queue_id
        finally:
            if own:
                c.close()

    # --- the delivery log -------------------------------------------------------------
    @staticmethod
    def events(d: Daemon) -> list[dict]:
        path = os.path.join(d.data_dir, "log", "delivery.jsonl")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        # Only whole lines: the daemon may be appending the next one right now.
        for line in data[:data.rfind(b"\n") + 1].decode("utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))  # a malformed line fails the test here
        return out

    def wait_events(self, d: Daemon, pred, timeout: float, what: str) -> list[dict]:
        """Poll the delivery log until pred(events) is true (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events(d)
            if pred(evs):
                return evs
            if time.monotonic() >= deadline:
                self.fail(f"timed out after {timeout:.0f}s waiting for {what}; delivery log:\n"
                          + "\n".join(json.dumps(e) for e in evs)
                          + "\n--- daemon stderr (tail) ---\n" + d.stderr_text()[-3000:])
            time.sleep(0.05)

    @staticmethod
    def of(evs, event=None, recipient=None, sender=None) -> list[dict]:
        return [e for e in evs
                if (event is None or e["event"] == event)
                and (recipient is None or e.get("recipient") == recipient)
                and (sender is None or e.get("sender") == sender)]

    def wait_event(self, d, event, recipient, timeout=None, n=1, sender=None) -> list[dict]:
        """Wait for n `event` records of `recipient`; returns all events of that recipient."""
        self.wait_events(d, lambda evs: len(self.of(evs, event, recipient, sender)) >= n,
                         timeout if timeout is not None else t(15),
                         f"{n} '{event}' event(s) for {recipient}")
        return self.of(self.events(d), None, recipient, sender)

    @staticmethod
    def wait_quiet(seconds=1.2):
        """Give the daemon `seconds` (more than one retry interval) to do something it
        should not: used only before asserting that something did NOT happen."""
        time.sleep(seconds)

    # --- notices ----------------------------------------------------------------------
    @staticmethod
    def notices(mxs: MxGroup):
        """(transaction, parsed DSN) of every notice the sender's MX accepted."""
        out = []
        for tr in mxs[SENDER_MX].messages():
            if tr.mail_from == "":
                out.append((tr, parse_dsn(tr.data)))
        return out

    def wait_notices(self, mxs: MxGroup, n: int, timeout=None):
        mx = mxs[SENDER_MX]
        ok = mx.wait_for(lambda: sum(1 for tr in mx.messages() if tr.mail_from == "") >= n,
                         timeout if timeout is not None else t(15))
        got = self.notices(mxs)
        self.assertTrue(ok, f"{len(got)} of {n} notices reached {SENDER_MX}:\n{mx.summary()}")
        return got

    def assertNoticeEnvelope(self, tr, to=SENDER):
        self.assertEqual(tr.mail_from, "", "a notice comes from the null sender <>")
        self.assertEqual([r.address for r in tr.rcpts], [to])


# =========================================================================================
# 1. MX preference and fallback
# =========================================================================================
class MxRouting(DeliveryCase):
    def test_preferred_mx_and_fallback_in_the_same_attempt(self):
        d, mxs = self.start({
            "127.0.0.2": None,
            "127.0.0.3": None,
            "127.0.0.7": Behaviour(greeting=421),
            "127.0.0.8": Behaviour(drop="greeting"),
        })
        # 127.0.0.6 (prefdown.test's preferred MX) has no listener: connection refused.
        for i in range(3):
            self.submit(d, [f"p{i}@pref.test"], body=message(f"pref{i}"))
        for dom in ("prefdown", "pref421", "prefdrop"):
            self.submit(d, [f"u@{dom}.test"], body=message(dom))
        rcpts = [f"p{i}@pref.test" for i in range(3)] + \
                ["u@prefdown.test", "u@pref421.test", "u@prefdrop.test"]
        evs = self.wait_events(d, lambda evs: all(self.of(evs, "delivered", r) for r in rcpts),
                               t(15), "all six delivered")
        for r in rcpts:
            [ev] = self.of(evs, "delivered", r)
            self.assertEqual(ev["attempt"], 1, f"fallback must happen within attempt 1: {ev}")
        self.assertEqual(self.of(evs, "deferred"), [], "no attempt may be deferred")
        # The preferred MX took all pref.test mail; the backup none of it.
        for i in range(3):
            [ev] = self.of(evs, "delivered", f"p{i}@pref.test")
            self.assertEqual((ev["mx"], ev["address"]), ("mx1.pref.test", "127.0.0.2"))
        got2 = sorted(r for tr in mxs["127.0.0.2"].messages() for r in tr.accepted_rcpts)
        self.assertEqual(got2, [f"p{i}@pref.test" for i in range(3)])
        # Each failing preferred host pushed its mail to the MX 20 host.
        for dom in ("prefdown", "pref421", "prefdrop"):
            [ev] = self.of(evs, "delivered", f"u@{dom}.test")
            self.assertEqual((ev["mx"], ev["address"]), (f"mx2.{dom}.test", "127.0.0.3"), ev)
        got3 = sorted(r for tr in mxs["127.0.0.3"].messages() for r in tr.accepted_rcpts)
        self.assertEqual(got3, ["u@pref421.test", "u@prefdown.test", "u@prefdrop.test"])
        # The broken preferred hosts were really tried first.
        self.assertGreaterEqual(mxs["127.0.0.7"].connection_count, 1)
        self.assertGreaterEqual(mxs["127.0.0.8"].connection_count, 1)
        self.assertEqual(mxs["127.0.0.7"].transactions() + mxs["127.0.0.8"].transactions(), [])
        self.assertEqual(mxs["127.0.0.7"].connections()[0].ended, "closed after 421 greeting")
        self.assertEqual(mxs["127.0.0.8"].connections()[0].ended, "dropped at greeting")
        # Now pref.test's own preferred MX goes away (its port closed): the MX 20 host
        # takes the next message, still in the first attempt.
        self.assertTrue(mxs["127.0.0.2"].wait_idle(t(10)), "the daemon keeps a connection open")
        mxs["127.0.0.2"].stop()
        self.submit(d, ["late@pref.test"], body=message("pref-late"))
        evs = self.wait_event(d, "delivered", "late@pref.test")
        [ev] = self.of(evs, "delivered")
        self.assertEqual((ev["attempt"], ev["mx"], ev["address"]),
                         (1, "mx2.pref.test", "127.0.0.3"), ev)
        self.assertEqual(self.of(evs, "deferred"), [])


# =========================================================================================
# 2. Implicit MX, null MX, NXDOMAIN, DNS failure
# =========================================================================================
class DnsOutcomes(DeliveryCase):
    def test_implicit_null_nxdomain_and_dns_failure(self):
        d, mxs = self.start({"127.0.0.4": None})
        self.submit(d, ["u@implicit.test"], body=message("implicit"))
        self.submit(d, ["u@nullmx.test"], body=message("nullmx"))
        self.submit(d, ["u@missing.nx.test"], body=message("nxdomain"))
        self.submit(d, ["u@unserved.example"], body=message("unserved"))

        evs = self.wait_events(d, lambda evs: self.of(evs, "delivered", "u@implicit.test")
                               and self.of(evs, "bounced", "u@nullmx.test")
                               and self.of(evs, "bounced", "u@missing.nx.test")
                               and self.of(evs, "deferred", "u@unserved.example"),
                               t(15), "implicit delivered, null MX/NXDOMAIN bounced, "
                                      "unserved deferred")
        # Implicit MX: the domain's own A record.
        [ev] = self.of(evs, "delivered", "u@implicit.test")
        self.assertEqual((ev["mx"], ev["address"]), ("implicit.test", "127.0.0.4"))
        [tr] = mxs["127.0.0.4"].messages()
        self.assertEqual(tr.accepted_rcpts, ["u@implicit.test"])

        [null] = self.of(evs, "bounced", "u@nullmx.test")
        self.assertEqual(null["status"], "5.1.10", null)
        [nx] = self.of(evs, "bounced", "u@missing.nx.test")
        self.assertEqual(nx["status"], "5.1.2", nx)
        for ev in (null, nx):
            self.assertEqual(ev["attempt"], 1)
            self.assertIn("dsn_queue_id", ev)

        # A DNS server that refuses: temporary, retried, never bounced.
        unserved = self.of(evs, "deferred", "u@unserved.example")
        self.assertEqual(unserved[0]["status"], "4.4.3", unserved[0])
        self.assertEqual(unserved[0]["attempt"], 1)
        self.assertIn("next_attempt", unserved[0])
        self.assertEqual(self.of(evs, "bounced", "u@unserved.example"), [])

        # The two bounces reached the sender, one notice each.
        notices = self.wait_notices(mxs, 2)
        by_rcpt = {}
        for tr, dsn in notices:
            self.assertNoticeEnvelope(tr)
            self.assertEqual(len(dsn.recipients), 1)
            by_rcpt[dsn.recipients[0]["Final-Recipient"]] = dsn
        self.assertEqual(set(by_rcpt), {"rfc822; u@nullmx.test", "rfc822; u@missing.nx.test"})
        for addr, status in (("u@nullmx.test", "5.1.10"), ("u@missing.nx.test", "5.1.2")):
            g = by_rcpt["rfc822; " + addr].recipient(addr)
            self.assertEqual(g["Action"], "failed")
            self.assertEqual(g["Status"], status)
        # Still deferred, never bounced, after another try.
        evs = self.wait_event(d, "deferred", "u@unserved.example", n=2)
        self.assertTrue(all(e["status"] == "4.4.3" for e in self.of(evs, "deferred")))
        self.assertEqual(self.of(evs, "bounced"), [])


# =========================================================================================
# 3. Retries, 4. expiry, 5. delay notices
# =========================================================================================
class Retries(DeliveryCase):
    def test_deferred_twice_then_delivered(self):
        # Counted per RCPT, not per connection (first_n): a retry due while the previous
        # connection still waits for more work (~1 s) may go over that same connection.
        seen = []

        def rcpt(addr):
            seen.append(addr)
            return (451, "4.3.0 try again later") if len(seen) <= 2 else (250, "2.1.5 ok")
        d, mxs = self.start({"127.0.0.10": Behaviour(rcpt_reply=rcpt)},
                            delivery={"retry_intervals": ["1s", "2s"]})
        self.submit(d, ["bob@dest.test"], body=message("retry"))
        evs = self.wait_event(d, "delivered", "bob@dest.test", timeout=t(20))
        mx = mxs["127.0.0.10"]
        self.wait_quiet()  # a 4th attempt would show up now
        evs = self.of(self.events(d), None, "bob@dest.test")
        seq = [(e["event"], e.get("attempt")) for e in evs]
        self.assertEqual(seq, [("received", None), ("deferred", 1), ("deferred", 2),
                               ("delivered", 3)])
        for e, interval in zip(self.of(evs, "deferred"), (1, 2)):
            self.assertEqual((e["code"], e["status"]), (451, "4.3.0"), e)
            self.assertIn("451 4.3.0 try again later", e["response"])
            self.assertIn("next_attempt", e)
            # retry_intervals ["1s", "2s"]: the n-th deferral waits the n-th interval
            # (whole seconds from the attempt's second).
            when = parse_time(e["time"]).replace(microsecond=0)
            self.assertEqual((parse_time(e["next_attempt"]) - when).total_seconds(), interval, e)
            self.assertEqual((e["mx"], e["address"]), ("mx.dest.test", "127.0.0.10"))
        # And the attempts kept to it: never before next_attempt.
        d1, d2, ok = self.of(evs, "deferred") + self.of(evs, "delivered")
        self.assertGreaterEqual(parse_time(d2["time"]), parse_time(d1["next_attempt"]))
        self.assertGreaterEqual(parse_time(ok["time"]), parse_time(d2["next_attempt"]))
        self.assertNotIn("next_attempt", self.of(evs, "delivered")[0])
        print(f"\n    retries: 3 attempts over {mx.connection_count} connection(s)", file=sys.stderr)
        self.assertEqual(len(mx.transactions()), 3, mx.summary())
        self.assertEqual(mx.message_count, 1)
        self.assertEqual([[r.reply[0] for r in tr.rcpts] for tr in mx.transactions()],
                         [[451], [451], [250]])
        # Deferrals before delay_notice_after send nothing to the sender.
        self.assertEqual(self.notices(mxs), [])

    def test_expiry_sends_failure_notice(self):
        reply = (451, "4.7.1 greylisted, come back later")
        d, mxs = self.start({"127.0.0.10": Behaviour(rcpt_reply=reply)},
                            delivery={"max_lifetime": "6s"})
        self.submit(d, ["bob@dest.test"], body=message("expiry"))
        evs = self.wait_event(d, "expired", "bob@dest.test", timeout=t(25))
        [exp] = self.of(evs, "expired")
        [rec] = self.of(evs, "received")
        self.assertGreaterEqual(exp["attempt"], 2, "retried before it expired")
        self.assertIn("dsn_queue_id", exp)
        self.assertIn("451 4.7.1 greylisted", exp["response"])
        # Not expired before max_lifetime (arrival is counted in whole seconds).
        self.assertGreaterEqual((parse_time(exp["time"]) - parse_time(rec["time"])).total_seconds(),
                                5.0)
        [(tr, dsn)] = self.wait_notices(mxs, 1)
        self.assertNoticeEnvelope(tr)
        self.assertEqual(dsn.content_types,
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        self.assertEqual(dsn.report_type, "delivery-status")
        self.assertEqual(dsn.message["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(dsn.message["In-Reply-To"], "<expiry@client.test>")
        self.assertEqual(dsn.per_message["Reporting-MTA"], f"dns; {HOSTNAME}")
        g = dsn.recipient("bob@dest.test")
        self.assertEqual(g["Action"], "failed")
        self.assertEqual(g["Status"], "4.4.7")
        self.assertTrue(g["Diagnostic-Code"].startswith("smtp;"), g["Diagnostic-Code"])
        self.assertIn("451 4.7.1 greylisted, come back later", g["Diagnostic-Code"])
        self.assertEqual(g["Remote-MTA"], "dns; mx.dest.test")
        self.assertIn("Last-Attempt-Date", g)
        self.assertIsNotNone(email_date(g["Last-Attempt-Date"]), g["Last-Attempt-Date"])
        self.assertNotIn("Will-Retry-Until", g)
        # RET not given: the whole message comes back.
        self.assertIsNotNone(dsn.returned)
        self.assertEqual(dsn.returned["Subject"], "test expiry")
        self.assertEqual(dsn.returned["Message-ID"], "<expiry@client.test>")
        self.assertIn("Body of expiry.", dsn.returned.get_content())
        self.assertIn(".a line with a leading dot", dsn.returned.get_content())
        # Expired means no more tries.
        n = mxs["127.0.0.10"].connection_count
        self.wait_quiet(1.5)
        self.assertEqual(mxs["127.0.0.10"].connection_count, n)
        self.assertEqual(len(self.notices(mxs)), 1)

    def test_one_delay_notice_and_notify_never_or_failure_get_none(self):
        d, mxs = self.start({"127.0.0.10": Behaviour(rcpt_reply="defer")},
                            delivery={"delay_notice_after": "2s", "max_lifetime": "1h"})
        self.submit(d, ["plain@dest.test"], body=message("delay-default"))
        self.submit(d, ["never@dest.test"], body=message("delay-never"), rcpt_params="NOTIFY=NEVER")
        self.submit(d, ["fail@dest.test"], body=message("delay-failure"),
                    rcpt_params="NOTIFY=FAILURE")
        rcpts = ["plain@dest.test", "never@dest.test", "fail@dest.test"]
        # Several more retries after the delay notice was due (2 s): attempt 5 at ~4 s.
        evs = self.wait_events(
            d, lambda evs: all(any(e["attempt"] >= 5 for e in self.of(evs, "deferred", r))
                               for r in rcpts),
            t(25), "five deferred attempts of each recipient")
        notices = self.wait_notices(mxs, 1)
        self.wait_quiet()
        notices = self.notices(mxs)
        evs = self.events(d)
        self.assertEqual(len(notices), 1, "exactly one delay notice, for the default NOTIFY: "
                         + str([n.recipients for _, n in notices]))
        tr, dsn = notices[0]
        self.assertNoticeEnvelope(tr)
        self.assertEqual(dsn.message["Subject"], "Delayed Mail (still being retried)")
        self.assertEqual([g["Final-Recipient"] for g in dsn.recipients],
                         ["rfc822; plain@dest.test"])
        g = dsn.recipient("plain@dest.test")
        self.assertEqual(g["Action"], "delayed")
        self.assertTrue(g["Status"].startswith("4."), g["Status"])
        self.assertIn("Will-Retry-Until", g)
        self.assertIn("451 4.3.0", g["Diagnostic-Code"])
        # A delay notice returns headers only.
        self.assertEqual(dsn.content_types[-1], "text/rfc822-headers")
        self.assertIn("Subject: test delay-default", dsn.returned_headers)
        # One "delayed" event per recipient, whatever NOTIFY said; only the default one
        # points to a notice.
        for r in rcpts:
            delayed = self.of(evs, "delayed", r)
            self.assertEqual(len(delayed), 1, f"{r}: {delayed}")
            self.assertEqual("dsn_queue_id" in delayed[0], r == "plain@dest.test", delayed[0])
            self.assertEqual(self.of(evs, "bounced", r) + self.of(evs, "expired", r), [])


# =========================================================================================
# 6. Bounces at RCPT, 7. DSN parameters to the next hop
# =========================================================================================
class Bounces(DeliveryCase):
    def test_one_notice_for_two_refused_recipients(self):
        def rcpt(addr):
            if addr.startswith("gone"):
                return (550, f"5.1.1 <{addr}>: no such user")
            return (250, "2.1.5 ok")
        d, mxs = self.start({"127.0.0.10": Behaviour(rcpt_reply=rcpt)})
        # A bounce from the null sender: nothing goes back.
        self.submit(d, ["gone3@dest.test"], sender="", body=message("from-null"))
        self.submit(d, ["gone1@dest.test", "gone2@dest.test", "ok@dest.test"],
                    body=message("bounce"), mail_params="RET=HDRS ENVID=env+2B42",
                    rcpt_params={"gone1@dest.test": "ORCPT=rfc822;Gone1+2Bx@dest.test"})
        evs = self.wait_events(d, lambda evs: self.of(evs, "bounced", "gone1@dest.test")
                               and self.of(evs, "bounced", "gone2@dest.test")
                               and self.of(evs, "delivered", "ok@dest.test")
                               and self.of(evs, "bounced", "gone3@dest.test"),
                               t(15), "two bounced, one delivered, the null sender's bounced")
        [b1], [b2] = self.of(evs, "bounced", "gone1@dest.test"), self.of(evs, "bounced", "gone2@dest.test")
        for b in (b1, b2):
            self.assertEqual((b["code"], b["status"], b["attempt"]), (550, "5.1.1", 1), b)
        self.assertEqual(b1["dsn_queue_id"], b2["dsn_queue_id"], "one notice covers both")
        [null_bounce] = self.of(evs, "bounced", "gone3@dest.test")
        self.assertNotIn("dsn_queue_id", null_bounce)
        [tr] = mxs["127.0.0.10"].messages()
        self.assertEqual(tr.accepted_rcpts, ["ok@dest.test"])

        [(ntr, dsn)] = self.wait_notices(mxs, 1)
        self.assertNoticeEnvelope(ntr)
        self.assertEqual(dsn.content_types,
                         ["text/plain", "message/delivery-status", "text/rfc822-headers"])
        self.assertEqual(dsn.per_message["Original-Envelope-Id"], "env+42")
        self.assertEqual(sorted(g["Final-Recipient"] for g in dsn.recipients),
                         ["rfc822; gone1@dest.test", "rfc822; gone2@dest.test"])
        g1, g2 = dsn.recipient("gone1@dest.test"), dsn.recipient("gone2@dest.test")
        self.assertEqual(g1["Original-Recipient"], "rfc822; Gone1+x@dest.test")
        self.assertNotIn("Original-Recipient", g2)
        for addr, g in (("gone1@dest.test", g1), ("gone2@dest.test", g2)):
            self.assertEqual(g["Action"], "failed")
            self.assertEqual(g["Status"], "5.1.1")
            self.assertEqual(g["Remote-MTA"], "dns; mx.dest.test")
            self.assertEqual(g["Diagnostic-Code"], f"smtp; 550 5.1.1 <{addr}>: no such user")
        self.assertIsNone(dsn.returned, "RET=HDRS: headers only")
        self.assertIn("Subject: test bounce", dsn.returned_headers)
        self.assertNotIn("Body of bounce", dsn.returned_headers)
        self.assertIn("<gone1@dest.test>", dsn.text)
        # The null sender's bounce produced no notice (and no notice was queued at all).
        self.wait_quiet()
        self.assertEqual(len(self.notices(mxs)), 1)
        self.assertEqual(len(self.of(self.events(d), "received", SENDER, sender="")), 1)


    def test_bounces_at_several_domains_share_one_notice(self):
        """One message, three recipients at three domains, all failing permanently in the
        same attempt (550 at RCPT, null MX, NXDOMAIN): the sender gets one failure notice
        for the message listing all three, as for several recipients at one domain ("one
        failure DSN per message per attempt"; Postfix's bounce daemon also gathers a
        message's failed recipients into one notice)."""
        d, mxs = self.start({"127.0.0.10": Behaviour(rcpt_reply="reject")})
        rcpts = ["gone@dest.test", "u@nullmx.test", "u@missing.nx.test"]
        self.submit(d, rcpts, body=message("multi"))
        evs = self.wait_events(d, lambda evs: all(self.of(evs, "bounced", r) for r in rcpts),
                               t(15), "three bounced")
        self.wait_notices(mxs, 1)
        self.wait_quiet()
        notices = self.notices(mxs)
        ids = {self.of(evs, "bounced", r)[0].get("dsn_queue_id") for r in rcpts}
        self.assertEqual(
            len(notices), 1,
            f"{len(notices)} failure notices for one message (dsn_queue_ids {sorted(ids)}): "
            + str([[g["Final-Recipient"] for g in dsn.recipients] for _, dsn in notices]))
        self.assertEqual(sorted(g["Final-Recipient"] for g in notices[0][1].recipients),
                         sorted("rfc822; " + r for r in rcpts))


class DsnPassing(DeliveryCase):
    def test_dsn_parameters_passed_on_only_where_offered(self):
        d, mxs = self.start({"127.0.0.11": Behaviour(),                     # offers DSN
                             "127.0.0.12": Behaviour().without("DSN")})     # strict: 555
        params = "RET=HDRS ENVID=QQ+2B314"
        self.submit(d, ["r1@dsn.test"], body=message("dsn1"), mail_params=params,
                    rcpt_params="NOTIFY=SUCCESS,DELAY ORCPT=rfc822;R1+2Bx@dsn.test")
        self.submit(d, ["r2@nodsn.test"], body=message("dsn2"), mail_params=params,
                    rcpt_params="NOTIFY=SUCCESS,DELAY ORCPT=rfc822;R2+2Bx@nodsn.test")
        self.submit(d, ["r3@nodsn.test"], body=message("dsn3"), mail_params=params,
                    rcpt_params="NOTIFY=FAILURE")
        evs = self.wait_events(d, lambda evs: all(self.of(evs, "delivered", r) for r in
                                                  ("r1@dsn.test", "r2@nodsn.test", "r3@nodsn.test")),
                               t(15), "three delivered")
        [m1] = mxs["127.0.0.11"].messages()
        self.assertEqual(m1.mail_params, {"SIZE": str(len(m1.data)), "RET": "HDRS",
                                          "ENVID": "QQ+2B314"})
        self.assertEqual([(r.address, r.params) for r in m1.rcpts],
                         [("r1@dsn.test", {"NOTIFY": "SUCCESS,DELAY",
                                           "ORCPT": "rfc822;R1+2Bx@dsn.test"})])
        m2, m3 = mxs["127.0.0.12"].messages()
        for m in (m2, m3):
            self.assertEqual(m.mail_params, {"SIZE": str(len(m.data))})
            self.assertEqual([r.params for r in m.rcpts], [{}])
        self.assertEqual([r.address for r in m2.rcpts + m3.rcpts], ["r2@nodsn.test", "r3@nodsn.test"])
        # NOTIFY=SUCCESS through a hop without DSN: a "relayed" notice now; through a hop
        # with DSN: none (the next hop owes it); NOTIFY=FAILURE: none.
        [(tr, dsn)] = self.wait_notices(mxs, 1)
        self.assertNoticeEnvelope(tr)
        self.assertEqual(dsn.message["Subject"], "Successful Mail Delivery Report")
        self.assertEqual(dsn.per_message["Original-Envelope-Id"], xtext_decode("QQ+2B314"))
        self.assertEqual([g["Final-Recipient"] for g in dsn.recipients], ["rfc822; r2@nodsn.test"])
        g = dsn.recipient("r2@nodsn.test")
        self.assertEqual(g["Action"], "relayed")
        self.assertTrue(g["Status"].startswith("2."), g["Status"])
        self.assertEqual(g["Original-Recipient"], "rfc822; R2+x@nodsn.test")
        self.assertEqual(g["Remote-MTA"], "dns; mx.nodsn.test")
        self.assertEqual(dsn.content_types[-1], "text/rfc822-headers")
        [ev] = self.of(evs, "delivered", "r2@nodsn.test")
        self.assertIn("dsn_queue_id", ev)
        for r in ("r1@dsn.test", "r3@nodsn.test"):
            self.assertNotIn("dsn_queue_id", self.of(evs, "delivered", r)[0])
        self.wait_quiet()
        self.assertEqual(len(self.notices(mxs)), 1)


# =========================================================================================
# 8. Connection reuse, 9. per-destination limits
# =========================================================================================
class Connections(DeliveryCase):
    def test_connection_reuse(self):
        timeline = Timeline()
        d, mxs = self.start({"127.0.0.13": timeline.behaviour()},
                            delivery={"max_messages_per_connection": 5, "max_connections": 1})
        c = d.session()
        try:
            for i in range(20):
                self.submit(d, [f"r{i}@reuse.test"], body=message(f"reuse{i}"), conn=c)
            c.cmd("QUIT")
        finally:
            c.close()
        mx = mxs["127.0.0.13"]
        mx.wait_messages(20, t(20))
        self.assertTrue(mx.wait_idle(t(10)))
        per_conn = mx.messages_per_connection()
        conns = mx.connections()
        print(f"\n    connection reuse: {len(per_conn)} connections for 20 messages, "
              f"messages per connection {per_conn}; connections with a transaction at "
              f"once: {timeline.max_overlap()} (FakeMx max_concurrent, which also counts a "
              f"server thread still closing the previous one: {mx.max_concurrent})",
              file=sys.stderr)
        self.assertEqual(sum(per_conn), 20)
        self.assertEqual(sorted(r for tr in mx.messages() for r in tr.accepted_rcpts),
                         sorted(f"r{i}@reuse.test" for i in range(20)))
        self.assertEqual(timeline.max_overlap(), 1, "max_connections = 1")
        self.assertLessEqual(mx.max_concurrent, 2, "max_connections = 1 (+1: see Timeline)")
        self.assertTrue(all(n <= 5 for n in per_conn), f"max 5 per connection: {per_conn}")
        self.assertGreaterEqual(len(per_conn), 4)
        self.assertGreater(max(per_conn), 1, f"no connection was reused: {per_conn}")
        # A burst queued faster than it is sent: (nearly) every connection carries 5.
        self.assertLessEqual(len(per_conn), 6, f"too little reuse: {per_conn}")
        for conn in conns:
            verbs = [cmd.split(" ", 1)[0].upper() for cmd in conn.commands]
            self.assertNotIn("RSET", verbs, conn.commands)
            self.assertEqual(verbs.count("MAIL"), len(conn.messages))
            self.assertEqual(conn.ended, "quit")
        evs = self.wait_events(d, lambda evs: len(self.of(evs, "delivered")) >= 20, t(10),
                               "20 delivered events")
        delivered = self.of(evs, "delivered")
        self.assertEqual(len(delivered), 20)
        self.assertTrue(all(e["attempt"] == 1 for e in delivered))

    def test_connection_closed_by_server_while_idle_is_not_reused(self):
        """The server ends an idle connection (here after 0.3 s without a command, without
        a 421) while ringmaild still holds it for more work (~1 s). The next message must
        not pay a retry interval for that: it goes over a fresh connection at attempt 1
        (not "connection lost after MAIL", deferred until the next retry: 5 minutes with
        the default schedule)."""
        d, mxs = self.start({"127.0.0.10": None}, idle_timeout=0.3)
        self.submit(d, ["a@dest.test"], body=message("idle-a"))
        self.wait_event(d, "delivered", "a@dest.test")
        mx = mxs["127.0.0.10"]
        self.assertTrue(mx.wait_for(lambda: mx.connections()[0].ended == "idle timeout", t(5)))
        time.sleep(0.2)   # inside ringmaild's idle wait (1 s after the first delivery)
        self.submit(d, ["b@dest.test"], body=message("idle-b"))
        evs = self.wait_event(d, "delivered", "b@dest.test")
        self.assertEqual(self.of(evs, "deferred"), [],
                         "a connection the server had closed was used for the next message")
        self.assertEqual(self.of(evs, "delivered")[0]["attempt"], 1)

    def test_per_domain_connection_limit_and_recipient_split(self):
        d, mxs = self.start(
            {"127.0.0.14": Behaviour(delay={"dot": 0.3}),
             "127.0.0.15": Behaviour(delay={"dot": 0.3}),
             "127.0.0.16": None},
            delivery={"max_connections": 3, "max_recipients_per_transaction": 2,
                      "domains": {"slow.test": {"max_connections": 1}}})
        c = d.session()
        try:
            for i in range(10):
                self.submit(d, [f"s{i}@slow.test"], body=message(f"slow{i}"), conn=c)
                self.submit(d, [f"f{i}@fast.test"], body=message(f"fast{i}"), conn=c)
            split = [f"x{i}@split.test" for i in range(5)]
            self.submit(d, split, body=message("split"), conn=c)
            c.cmd("QUIT")
        finally:
            c.close()
        slow, fast, sp = mxs["127.0.0.14"], mxs["127.0.0.15"], mxs["127.0.0.16"]
        fast.wait_messages(10, t(20))
        slow.wait_messages(10, t(30))
        sp.wait_messages(3, t(15))
        print(f"\n    concurrency: slow.test max {slow.max_concurrent} over "
              f"{slow.connection_count} connections, fast.test max {fast.max_concurrent} over "
              f"{fast.connection_count} connections", file=sys.stderr)
        self.assertEqual(slow.max_concurrent, 1, "[delivery.domains.\"slow.test\"] max_connections=1")
        self.assertGreater(fast.max_concurrent, 1, "default max_connections=3 lets fast.test overlap")
        self.assertLessEqual(fast.max_concurrent, 3)
        # 5 recipients, at most 2 per transaction: 2 + 2 + 1, no recipient twice.
        trs = sp.transactions()
        self.assertEqual([len(tr.rcpts) for tr in trs], [2, 2, 1], sp.summary())
        self.assertEqual([r for tr in trs for r in tr.accepted_rcpts], split)
        self.assertTrue(all(tr.accepted for tr in trs))
        evs = self.wait_events(d, lambda evs: len(self.of(evs, "delivered")) >= 25, t(10),
                               "25 delivered events")
        self.assertTrue(all(self.of(evs, "delivered", r) for r in split))
        self.assertEqual(len(self.of(evs, "delivered")), 25)
        self.assertEqual(self.of(evs, "deferred"), [])


# =========================================================================================
# 10. A server that drops or stalls
# =========================================================================================
class DropAndStall(DeliveryCase):
    def test_drop_after_dot_and_stall_at_rcpt_defer_then_deliver(self):
        d, mxs = self.start({"127.0.0.17": Behaviour(drop="dot"),
                             "127.0.0.18": Behaviour(stall="rcpt")},
                            delivery={"command_timeout": "2s"})
        self.submit(d, ["a@drop.test"], body=message("drop"))
        self.submit(d, ["b@stall.test"], body=message("stall"))
        evs = self.wait_events(d, lambda evs: self.of(evs, "deferred", "a@drop.test")
                               and self.of(evs, "deferred", "b@stall.test"),
                               t(15), "both deferred")
        drop = self.of(evs, "deferred", "a@drop.test")[0]
        stall = self.of(evs, "deferred", "b@stall.test")[0]
        self.assertEqual((drop["code"], drop["status"]), (0, "4.4.2"), drop)
        self.assertIn("connection lost after end of data", drop["response"])
        self.assertEqual((stall["code"], stall["status"]), (0, "4.4.2"), stall)
        self.assertIn("timeout after RCPT", stall["response"])
        # The servers behave again: the next attempt delivers.
        mxs["127.0.0.17"].set_behaviour(drop=None)
        mxs["127.0.0.18"].set_behaviour(stall=None)
        evs = self.wait_event(d, "delivered", "a@drop.test", timeout=t(15))
        self.assertGreaterEqual(self.of(evs, "delivered")[0]["attempt"], 2)
        evs = self.wait_event(d, "delivered", "b@stall.test", timeout=t(15))
        self.assertGreaterEqual(self.of(evs, "delivered")[0]["attempt"], 2)
        for r in ("a@drop.test", "b@stall.test"):
            self.assertEqual(self.of(self.events(d), "bounced", r), [])
        self.assertEqual(mxs["127.0.0.17"].message_count, 1)
        self.assertEqual(mxs["127.0.0.18"].message_count, 1)
        first = mxs["127.0.0.18"].connections()[0]
        self.assertEqual(first.ended, "stalled at rcpt")
        self.assertEqual(mxs["127.0.0.17"].connections()[0].ended, "dropped at dot")
        self.assertEqual(self.notices(mxs), [])


# =========================================================================================
# 11. Relayhost
# =========================================================================================
class Relayhost(DeliveryCase):
    AUTH = ("relayuser", "s3cret pass")

    def relay_start(self, password, tls="none"):
        # relay.test's own MX (.19) and pref.test's (.2) listen too: neither may be used.
        return self.start(
            {RELAYHOST: Behaviour(auth=self.AUTH), "127.0.0.19": None, "127.0.0.2": None},
            delivery=lambda port: {"tls": tls, "relayhost": f"{RELAYHOST}:{port}",
                                   "relayhost_username": self.AUTH[0],
                                   "relayhost_password": password})

    def test_everything_goes_to_the_smart_host_with_auth(self):
        d, mxs = self.relay_start(self.AUTH[1])
        self.submit(d, ["x@relay.test"], body=message("relay1"))
        self.submit(d, ["y@pref.test"], body=message("relay2"))
        mx = mxs[RELAYHOST]
        mx.wait_messages(2, t(15))
        got = sorted(r for tr in mx.messages() for r in tr.accepted_rcpts)
        self.assertEqual(got, ["x@relay.test", "y@pref.test"])
        for other in ("127.0.0.19", "127.0.0.2", SENDER_MX):
            self.assertEqual(mxs[other].connection_count, 0, f"{other} must not be used")
        for conn in mx.connections():
            if conn.transactions:
                self.assertEqual(conn.auth_user, self.AUTH[0])
                self.assertEqual(conn.auth_attempts, 1)
                self.assertFalse(conn.starttls)
        evs = self.wait_events(d, lambda evs: len(self.of(evs, "delivered")) == 2, t(10),
                               "two delivered")
        for e in self.of(evs, "delivered"):
            self.assertEqual(e["address"], RELAYHOST)

    def test_wrong_password_defers(self):
        # 535 from the relayhost is the operator's mistake, not the message's: the mail is
        # deferred (as Postfix's smtp_sasl_auth_soft_bounce), never bounced, and the
        # server's own code stays in the event.
        d, mxs = self.relay_start("wrong password")
        self.submit(d, ["x@relay.test"], body=message("badauth"))
        evs = self.wait_event(d, "deferred", "x@relay.test", timeout=t(15))
        [b] = self.of(evs, "deferred")[:1]
        self.assertEqual(b["code"], 535, b)
        self.assertTrue(b["status"].startswith("4."), b)
        self.assertIn("535", b["response"])
        self.assertEqual(self.of(evs, "bounced"), [])
        mx = mxs[RELAYHOST]
        self.assertEqual(mx.message_count, 0)
        self.assertGreaterEqual(mx.connections()[0].auth_attempts, 1)
        self.assertIsNone(mx.connections()[0].auth_user)
        self.assertEqual(mxs["127.0.0.19"].connection_count, 0)

    def test_no_password_in_plaintext_unless_tls_none(self):
        # tls = "opportunistic" and a relayhost without STARTTLS: the password must not go
        # out in the clear; the mail waits (deferred), it is not bounced.
        d, mxs = self.relay_start(self.AUTH[1], tls="opportunistic")
        self.submit(d, ["x@relay.test"], body=message("plainauth"))
        evs = self.wait_event(d, "deferred", "x@relay.test", timeout=t(15))
        self.assertEqual(self.of(evs, "bounced"), [])
        mx = mxs[RELAYHOST]
        self.assertTrue(mx.wait_idle(t(5)))
        for conn in mx.connections():
            self.assertEqual(conn.auth_attempts, 0, conn.commands)
            self.assertFalse(any(cmd.upper().startswith("AUTH") for cmd in conn.commands),
                             conn.commands)
        self.assertEqual(mx.message_count, 0)


# =========================================================================================
# 12. SMTPUTF8
# =========================================================================================
class SmtpUtf8(DeliveryCase):
    def test_utf8_message_to_mx_without_smtputf8_bounces_5_6_7(self):
        d, mxs = self.start({"127.0.0.21": Behaviour().without("SMTPUTF8")})
        sender = "ålice@sender.test"
        self.submit(d, ["jörg@utf8.test"], sender=sender, body=message("utf8"),
                    mail_params="SMTPUTF8")
        # An ASCII message that merely came with SMTPUTF8 still goes through.
        self.submit(d, ["bob@utf8.test"], body=message("ascii"), mail_params="SMTPUTF8")
        evs = self.wait_events(d, lambda evs: self.of(evs, "bounced", "jörg@utf8.test")
                               and self.of(evs, "delivered", "bob@utf8.test"),
                               t(15), "UTF-8 bounced, ASCII delivered")
        [b] = self.of(evs, "bounced", "jörg@utf8.test")
        self.assertEqual(b["status"], "5.6.7", b)
        self.assertEqual(b["sender"], sender)
        mx = mxs["127.0.0.21"]
        self.assertEqual([r.address for tr in mx.transactions() for r in tr.rcpts],
                         ["bob@utf8.test"], "the UTF-8 message must not be offered at all")
        [(tr, dsn)] = self.wait_notices(mxs, 1)
        self.assertNoticeEnvelope(tr, to=sender)
        self.assertIn("SMTPUTF8", tr.mail_params, "a notice to a UTF-8 address needs SMTPUTF8")
        self.assertEqual(dsn.content_types[1], "message/global-delivery-status")
        g = dsn.recipient("jörg@utf8.test")
        self.assertEqual(g["Action"], "failed")
        self.assertEqual(g["Status"], "5.6.7")
        self.assertTrue(g["Final-Recipient"].startswith("utf-8;"), g["Final-Recipient"])


# =========================================================================================
# 13. Local delivery
# =========================================================================================
class LocalDelivery(DeliveryCase):
    def test_local_user_delivered_unknown_bounced_queue_empty(self):
        d, mxs = self.start({})
        d.add_user("carol@example.test", "Carol pass 1")
        self.submit(d, ["carol@example.test", "nobody@example.test"], body=message("local"),
                    rcpt_params={"carol@example.test": "NOTIFY=SUCCESS,FAILURE"})
        evs = self.wait_events(d, lambda evs: self.of(evs, "delivered", "carol@example.test")
                               and self.of(evs, "bounced", "nobody@example.test"),
                               t(15), "local delivered and bounced")
        [ok] = self.of(evs, "delivered", "carol@example.test")
        self.assertEqual(ok["mx"], "local", ok)
        self.assertEqual(ok["attempt"], 1)
        self.assertIn("carol@example.test", ok["response"])
        [b] = self.of(evs, "bounced", "nobody@example.test")
        self.assertEqual((b["mx"], b["code"], b["status"]), ("local", 550, "5.1.1"), b)
        # Two notices: the bounce of nobody@, and "delivered" for carol@ (NOTIFY=SUCCESS:
        # a local mailbox is the final hop, so the Action is delivered, not relayed).
        notices = self.wait_notices(mxs, 2)
        kinds = {}
        for tr, dsn in notices:
            self.assertNoticeEnvelope(tr)
            self.assertEqual(len(dsn.recipients), 1)
            kinds[dsn.recipients[0]["Action"]] = dsn
        self.assertEqual(sorted(kinds), ["delivered", "failed"])
        g = kinds["failed"].recipient("nobody@example.test")
        self.assertEqual(g["Status"], "5.1.1")
        self.assertIn("no such user", g["Diagnostic-Code"])
        g = kinds["delivered"].recipient("carol@example.test")
        self.assertTrue(g["Status"].startswith("2."), g["Status"])
        # The notices themselves were delivered and logged; nothing is left in the queue.
        self.wait_events(d, lambda evs: len(self.of(evs, "delivered", SENDER, sender="")) >= 2,
                         t(10), "both notices delivered")
        harness.require_ringctl(self, d)
        deadline = time.monotonic() + t(10)
        ids = harness.queue_list_ids(d)
        while ids and time.monotonic() < deadline:
            time.sleep(0.1)
            ids = harness.queue_list_ids(d)
        self.assertEqual(ids, [], d.ringctl("queue", "list").stdout.decode(errors="replace"))


# =========================================================================================
# STARTTLS policy (opportunistic by default, "none", "required")
# =========================================================================================
class TlsPolicy(DeliveryCase):
    def test_starttls_used_when_offered_unless_none_and_required_defers(self):
        d, mxs = self.start(
            {"127.0.0.22": Behaviour(starttls=True),
             "127.0.0.23": Behaviour(starttls=True),
             "127.0.0.24": Behaviour()},
            delivery={"tls": "opportunistic",
                      "domains": {"notls.test": {"tls": "none"},
                                  "reqtls.test": {"tls": "required"}}})
        self.submit(d, ["a@tls.test"], body=message("tls"))
        self.submit(d, ["b@notls.test"], body=message("notls"))
        self.submit(d, ["c@reqtls.test"], body=message("reqtls"))
        evs = self.wait_events(d, lambda evs: self.of(evs, "delivered", "a@tls.test")
                               and self.of(evs, "delivered", "b@notls.test")
                               and self.of(evs, "deferred", "c@reqtls.test"),
                               t(15), "two delivered, the TLS-required one deferred")
        [c] = mxs["127.0.0.22"].connections()
        self.assertTrue(c.starttls, "opportunistic TLS: STARTTLS when offered")
        self.assertEqual(len(c.messages), 1)
        [c] = mxs["127.0.0.23"].connections()
        self.assertFalse(c.starttls, 'tls = "none": no STARTTLS')
        self.assertNotIn("STARTTLS", c.commands)
        self.assertEqual(len(c.messages), 1)
        # Required but not offered: nothing is sent in plaintext, and it is not a bounce.
        req = mxs["127.0.0.24"]
        self.assertEqual(req.transactions(), [])
        self.assertEqual(self.of(evs, "bounced", "c@reqtls.test"), [])
        self.assertIn("TLS", self.of(evs, "deferred", "c@reqtls.test")[0]["response"])


if __name__ == "__main__":
    unittest.main()
