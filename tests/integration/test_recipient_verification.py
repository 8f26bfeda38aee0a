"""[relay] reject_unknown_recipients: unknown local recipients refused at RCPT (550 5.1.1).

With the key on, mail for a local domain is taken only for an address of the user
database (login or alias, any case) and for postmaster (RFC 5321 4.5.1); anything else is
refused before DATA, so no bounce is ever sent for it (no backscatter). Relaying is not
touched. With the key off (the default) every local address is taken, as before.
"""
import smtplib
import unittest

import harness
from harness import LOCAL_DOMAIN, Daemon

UNKNOWN = "5.1.1 "  # Reply.text: the text after the code


class RejectUnknownRecipients(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(trusted_networks=["127.0.0.0/8"],
                       relay={"reject_unknown_recipients": True}, max_errors=100)
        cls.d.start()
        ok, why = harness.ringctl_usable(cls.d)
        if not ok:
            cls.d.stop()
            raise unittest.SkipTest(why)
        cls.d.add_user(f"alice@{LOCAL_DOMAIN}", "secret", aliases=[f"al@{LOCAL_DOMAIN}"])

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def session(self):
        c = self.d.connect()
        c.expect(220)
        c.cmd("EHLO client.test", expect=250)
        c.cmd("MAIL FROM:<sender@remote.test>", expect=250)
        return c

    def test_known_addresses_are_taken(self):
        with self.session() as c:
            for rcpt in (f"alice@{LOCAL_DOMAIN}", f"ALICE@{LOCAL_DOMAIN.upper()}",
                         f"al@{LOCAL_DOMAIN}", f"postmaster@{LOCAL_DOMAIN}",
                         f"PostMaster@{LOCAL_DOMAIN}", "postmaster"):
                r = c.cmd(f"RCPT TO:<{rcpt}>")
                self.assertEqual(r.code, 250, f"{rcpt}: {r.text}")

    def test_unknown_local_addresses_are_refused(self):
        with self.session() as c:
            for rcpt in (f"bob@{LOCAL_DOMAIN}", f"alice.x@{LOCAL_DOMAIN}",
                         f"alic@{LOCAL_DOMAIN}", f"postmaster2@{LOCAL_DOMAIN}"):
                r = c.cmd(f"RCPT TO:<{rcpt}>")
                self.assertEqual(r.code, 550, f"{rcpt}: {r.text}")
                self.assertTrue(r.text.startswith(UNKNOWN), r.text)
                self.assertIn(rcpt, r.text)
            # The refused ones are not part of the transaction (RFC 2920 3.1: 554).
            r = c.cmd("DATA")
            self.assertEqual(r.code, 554, r.text)
            self.assertIn("no valid recipients", r.text)

    def test_mixed_transaction_stores_only_known(self):
        s = smtplib.SMTP(self.d.host, self.d.port, timeout=harness.t(20))
        try:
            refused = s.sendmail("sender@remote.test",
                                 [f"alice@{LOCAL_DOMAIN}", f"nobody@{LOCAL_DOMAIN}"],
                                 b"Subject: x\r\n\r\nhello\r\n")
        finally:
            s.quit()
        self.assertEqual(list(refused), [f"nobody@{LOCAL_DOMAIN}"])
        self.assertEqual(refused[f"nobody@{LOCAL_DOMAIN}"][0], 550)

    def test_relaying_is_unchanged(self):
        # A trusted client relays to a remote domain: no user lookup for that.
        with self.session() as c:
            c.cmd("RCPT TO:<someone@remote.test>", expect=250)

    def test_user_added_later_is_taken_at_once(self):
        with self.session() as c:
            r = c.cmd(f"RCPT TO:<carol@{LOCAL_DOMAIN}>")
            self.assertEqual(r.code, 550, r.text)
        self.d.add_user(f"carol@{LOCAL_DOMAIN}", "secret2")
        with self.session() as c:
            c.cmd(f"RCPT TO:<carol@{LOCAL_DOMAIN}>", expect=250)


class BarePostmasterWithoutLocalDomains(harness.DaemonTestCase):
    def test_pure_relay_refuses_bare_postmaster(self):
        # No local domain: no mailbox for it, and it is never relayed either.
        with Daemon(local_domains=[], trusted_networks=["127.0.0.0/8"]) as d:
            with d.connect() as c:
                c.expect(220)
                c.cmd("EHLO client.test", expect=250)
                c.cmd("MAIL FROM:<sender@remote.test>", expect=250)
                r = c.cmd("RCPT TO:<Postmaster>")
                self.assertEqual(r.code, 550, r.text)
                self.assertTrue(r.text.startswith("5.1.1 "), r.text)


class DefaultTakesAnyLocalAddress(harness.DaemonTestCase):
    def test_unknown_local_address_is_taken_by_default(self):
        with Daemon() as d:
            with d.connect() as c:
                c.expect(220)
                c.cmd("EHLO client.test", expect=250)
                c.cmd("MAIL FROM:<sender@remote.test>", expect=250)
                c.cmd(f"RCPT TO:<nobody@{LOCAL_DOMAIN}>", expect=250)


if __name__ == "__main__":
    unittest.main()
