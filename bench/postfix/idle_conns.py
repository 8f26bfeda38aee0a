#!/usr/bin/env python3
"""Open N idle SMTP connections, read each banner, and report a server's memory.

Used by bench/compare-postfix. Usage:
  idle_conns.py --port P --count N --pid PID [--pid PID ...] [--children-of PID]
                [--hold SECONDS] [--ehlo]

Measures the servers' memory (sum over the given pids, plus the processes whose parent
is --children-of) before opening, after all N connections have their 220 banner (and
optionally an EHLO reply), then closes everything. Prints one line:
  IDLE count=N opened=K rss_before_kib=A rss_after_kib=B kib_per_conn=X
       pss_before_kib=C pss_after_kib=D pss_kib_per_conn=Y procs_before=.. procs_after=..
RSS counts shared library pages once per process; PSS divides shared pages among
the processes that map them (the fair number for a process-per-connection server).
Connections are spread over source addresses 127.0.0.1..127.0.0.x, 20,000 per
address, so ephemeral ports never run out.
"""
import argparse
import os
import resource
import selectors
import socket
import sys
import time


def proc_mem(pid):
    """(rss_kib, pss_kib) of one process; (0, 0) if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = pss = int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            # field 4 (after the parenthesised comm) is the parent pid
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == ppid:
                out.append(int(d))
        except (OSError, ValueError):
            pass
    return out


def measure(pids, parent):
    allpids = list(pids) + (children(parent) if parent else [])
    rss = pss = 0
    for p in allpids:
        r, s = proc_mem(p)
        rss += r
        pss += s
    return rss, pss, len(allpids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--pid", type=int, action="append", default=[])
    ap.add_argument("--children-of", type=int, default=0)
    ap.add_argument("--hold", type=float, default=2.0, help="seconds to wait before measuring")
    ap.add_argument("--ehlo", action="store_true", help="also send EHLO and read the reply")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--per-source", type=int, default=20000)
    a = ap.parse_args()

    want = a.count + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
        except (ValueError, OSError) as e:
            print(f"idle_conns: cannot raise open-file limit to {want}: {e}", file=sys.stderr)
            return 2

    time.sleep(0.5)
    before = measure(a.pid, a.children_of)

    st = State(a)
    deadline = time.time() + a.timeout
    for i in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        src = f"127.0.0.{1 + i // a.per_source}" if a.host.startswith("127.") else None
        try:
            if src and src != "127.0.0.1":
                s.bind((src, 0))
            s.setblocking(False)
            s.connect_ex((a.host, a.port))
        except OSError as e:
            st.failed += 1
            s.close()
            if st.failed == 1:
                print(f"idle_conns: connect failed: {e}", file=sys.stderr)
            continue
        st.add(s)
        # keep the listen backlog from overflowing: read banners as we go
        if len(st.pending) >= 256:
            st.drain(deadline, limit=128)
    st.drain(deadline, limit=0)
    time.sleep(a.hold)
    after = measure(a.pid, a.children_of)
    ok = len(st.ready)
    for s in st.socks:
        try:
            s.close()
        except OSError:
            pass
    n = max(ok, 1)
    print("IDLE count=%d opened=%d closed_by_server=%d rss_before_kib=%d rss_after_kib=%d "
          "kib_per_conn=%.2f pss_before_kib=%d pss_after_kib=%d pss_kib_per_conn=%.2f "
          "procs_before=%d procs_after=%d"
          % (a.count, ok, st.closed, before[0], after[0], (after[0] - before[0]) / n,
             before[1], after[1], (after[1] - before[1]) / n, before[2], after[2]))
    return 0 if ok == a.count else 1


class State:
    def __init__(self, args):
        self.a = args
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.pending = {}  # sock -> bytes of the reply read so far
        self.ehlo_sent = set()
        self.ready = set()
        self.closed = 0
        self.failed = 0

    def add(self, s):
        self.socks.append(s)
        self.pending[s] = b""
        self.sel.register(s, selectors.EVENT_READ)

    def _drop(self, s, ok):
        self.sel.unregister(s)
        self.pending.pop(s, None)
        if ok:
            self.ready.add(s)
        else:
            self.closed += 1

    def drain(self, deadline, limit):
        """Read banners (and EHLO replies) until at most `limit` sockets are pending."""
        while len(self.pending) > limit and time.time() < deadline:
            for key, _ in self.sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._drop(s, False)
                    continue
                buf = self.pending[s] + data
                # complete when a final reply line "NNN text" CRLF has arrived
                lines = buf.split(b"\r\n")[:-1]
                if not any(len(l) >= 4 and l[3:4] == b" " for l in lines):
                    self.pending[s] = buf
                    continue
                if not lines[-1].startswith(b"2"):
                    self._drop(s, False)
                    continue
                if self.a.ehlo and s not in self.ehlo_sent:
                    self.ehlo_sent.add(s)
                    self.pending[s] = b""
                    try:
                        s.send(b"EHLO idle.test\r\n")
                    except OSError:
                        self._drop(s, False)
                    continue
                self._drop(s, True)


if __name__ == "__main__":
    sys.exit(main())
