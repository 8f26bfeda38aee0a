// mta/runtime: Task, Loop, ops, Stream and Listener on a real io_uring.
//
// Every test runs its coroutines on a Loop together with a watchdog: a Sleep that, if the
// test has not finished in time, fails it and stops the loop (the on_stop hook then
// cancels whatever is still waiting), so a hang is a failure, never a stuck run.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mta/runtime/buffer_ring.h"
#include "mta/runtime/listener.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"
#include "tests/support/watchdog.h"

namespace ringmail::rt {
namespace {

using namespace std::chrono_literals;

int count_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;  // the directory stream's own fd
}

using ringmail::testing::Watchdog;

// Runs `body` to completion on `loop` within `limit`, then stops the loop.
Task<void> finish(Loop& loop, Watchdog& wd, Task<void> body) {
  co_await body;
  wd.disarm();
  loop.stop();
}

void run_on_loop(Loop& loop, Task<void> body, Duration limit = 10s) {
  Watchdog wd(loop, limit);
  loop.spawn(finish(loop, wd, std::move(body)));
  loop.run();
  EXPECT_FALSE(wd.fired());
  EXPECT_EQ(loop.live_tasks(), 0u);
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A listening socket on 127.0.0.1 with a kernel-chosen port.
struct TestListenSocket {
  int fd = -1;
  sockaddr_in addr{};
  TestListenSocket() {
    sockaddr_in any = loopback(0);
    auto r = listen_socket(reinterpret_cast<sockaddr*>(&any), sizeof any);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    if (!r.ok()) return;
    fd = r.value();
    socklen_t len = sizeof addr;
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    EXPECT_NE(addr.sin_port, 0);
  }
};

// --- Task ---------------------------------------------------------------------------

Task<int> add(int a, int b) {
  co_return a + b;
}

Task<std::string> greet(std::string name) {
  std::string s = "hello " + name;
  co_return s;
}

Task<std::unique_ptr<int>> boxed(int v) {
  co_return std::make_unique<int>(v);
}

Task<int> depth(int n) {
  if (n == 0) co_return 0;
  int below = co_await depth(n - 1);
  co_return below + 1;
}

Task<void> set_flag(bool& flag) {
  flag = true;
  co_return;
}

Task<void> task_values(std::vector<std::string>& log) {
  int sum = co_await add(2, 40);
  log.push_back(std::to_string(sum));
  std::string g = co_await greet("world");
  log.push_back(g);
  std::unique_ptr<int> p = co_await boxed(7);
  log.push_back(std::to_string(*p));
  int d = co_await depth(1000);
  log.push_back(std::to_string(d));
  bool flag = false;
  co_await set_flag(flag);
  log.push_back(flag ? "flag" : "no flag");
}

TEST(Task, ValuesAndNestingWithoutSuspending) {
  Loop loop;
  std::vector<std::string> log;
  // Nothing here suspends on the ring: spawn() runs it to the end at once.
  loop.spawn(task_values(log));
  EXPECT_EQ(loop.live_tasks(), 0u);
  EXPECT_EQ(log, (std::vector<std::string>{"42", "hello world", "7", "1000", "flag"}));
}

Task<int> sleepy_add(Loop& loop, int a, int b) {
  Sleep s(loop, 1ms);
  int r = co_await s;
  EXPECT_EQ(r, 0);
  co_return a + b;
}

Task<int> sleepy_chain(Loop& loop, int n) {
  if (n == 0) co_return 0;
  int below = co_await sleepy_chain(loop, n - 1);
  int one = co_await sleepy_add(loop, 0, 1);
  co_return below + one;
}

Task<void> task_across_the_ring(Loop& loop, int& out) {
  int v = co_await sleepy_chain(loop, 20);
  out = v;
}

TEST(Task, ValuesAcrossSuspensions) {
  Loop loop;
  int out = -1;
  run_on_loop(loop, task_across_the_ring(loop, out));
  EXPECT_EQ(out, 20);
}

TEST(Task, UnstartedTaskIsDestroyedCleanly) {
  // Lazy: creating and dropping a task runs nothing and leaks nothing (ASan checks).
  bool flag = false;
  { Task<void> t = set_flag(flag); }
  EXPECT_FALSE(flag);
  { Task<std::string> t = greet("x"); }
  Task<int> a = add(1, 2);
  Task<int> b = std::move(a);
  b = add(3, 4);
}

// --- Sleep --------------------------------------------------------------------------

Task<void> sleeps(Loop& loop, std::vector<int>& order, int id, Duration d, int& res) {
  Sleep s(loop, d);
  res = co_await s;
  order.push_back(id);
}

Task<void> sleep_test(Loop& loop, std::vector<int>& order, Duration& elapsed, int& r1, int& r2) {
  auto t0 = Clock::now();
  Sleep s(loop, 20ms);
  r1 = co_await s;
  elapsed = Clock::now() - t0;
  loop.spawn(sleeps(loop, order, 2, 60ms, r2));
  loop.spawn(sleeps(loop, order, 1, 5ms, r2));
  Sleep wait(loop, 150ms);
  co_await wait;
}

TEST(Ops, SleepFires) {
  Loop loop;
  std::vector<int> order;
  Duration elapsed{};
  int r1 = -1, r2 = -1;
  run_on_loop(loop, sleep_test(loop, order, elapsed, r1, r2));
  EXPECT_EQ(r1, 0);
  EXPECT_EQ(r2, 0);
  EXPECT_GE(elapsed, Duration(20ms));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// --- RecvSelect ---------------------------------------------------------------------

struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0); }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
};

Task<void> recv_timeout(Loop& loop, int fd, int& res, bool& had_buffer, Duration& elapsed) {
  auto t0 = Clock::now();
  RecvSelect op(loop, fd, 50ms);
  res = co_await op;
  elapsed = Clock::now() - t0;
  had_buffer = op.has_buffer();
}

TEST(Ops, RecvSelectDeadlineIsETIME) {
  Loop loop;
  SocketPair sp;
  int res = 0;
  bool had_buffer = true;
  Duration elapsed{};
  run_on_loop(loop, recv_timeout(loop, sp.fd[0], res, had_buffer, elapsed));
  EXPECT_EQ(res, -ETIME);
  EXPECT_FALSE(had_buffer);
  EXPECT_GE(elapsed, Duration(50ms));
}

Task<void> recv_data(Loop& loop, int fd, std::string& got) {
  RecvSelect op(loop, fd, 5s);
  int n = co_await op;
  if (n > 0) {
    EXPECT_TRUE(op.has_buffer());
    got.assign(loop.buffers().data(op.buffer_id()), static_cast<size_t>(n));
    loop.buffers().give_back(op.buffer_id());
  } else {
    ADD_FAILURE() << "recv: " << n;
  }
}

TEST(Ops, RecvSelectGetsData) {
  Loop loop;
  SocketPair sp;
  ASSERT_EQ(::write(sp.fd[1], "ping", 4), 4);
  std::string got;
  run_on_loop(loop, recv_data(loop, sp.fd[0], got));
  EXPECT_EQ(got, "ping");
}

// --- Stream -------------------------------------------------------------------------

Task<void> fill_until_cancelled(Stream& s, int& res) {
  res = co_await s.fill(30s, 4096);
}

Task<void> cancel_test(Loop& loop, Stream& s, int& res, bool& was_reading) {
  loop.spawn(fill_until_cancelled(s, res));
  Sleep pause(loop, 20ms);
  co_await pause;
  was_reading = s.reading();
  s.cancel_read();
  Sleep settle(loop, 20ms);
  co_await settle;
}

TEST(Stream, CancelReadGivesECANCELED) {
  Loop loop;
  SocketPair sp;
  Stream s(loop, sp.fd[0]);
  sp.fd[0] = -1;  // the Stream owns it now
  int res = 0;
  bool was_reading = false;
  run_on_loop(loop, cancel_test(loop, s, res, was_reading));
  EXPECT_TRUE(was_reading);
  EXPECT_EQ(res, -ECANCELED);
  EXPECT_FALSE(s.reading());
}

Task<void> stream_basics(Stream& s, int peer, std::vector<int>& results, std::string& seen) {
  // Timeout with nothing to read.
  int t = co_await s.fill(30ms, 4096);
  results.push_back(t);
  EXPECT_EQ(::write(peer, "0123456789", 10), 10);
  int n = co_await s.fill(5s, 4096);
  results.push_back(n);
  seen = std::string(s.input());
  s.consume(3);
  EXPECT_EQ(s.input(), "3456789");
  // Unconsumed input already at the limit: no read, -ENOBUFS.
  int full = co_await s.fill(5s, 7);
  results.push_back(full);
  // More arrives behind what is left.
  EXPECT_EQ(::write(peer, "abc", 3), 3);
  int m = co_await s.fill(5s, 4096);
  results.push_back(m);
  EXPECT_EQ(s.input(), "3456789abc");
  s.consume(10);
  EXPECT_EQ(s.input(), "");
  // Output is gathered and sent in one flush.
  s.write("hello ");
  s.write("world");
  EXPECT_EQ(s.pending_output(), 11u);
  int f = co_await s.flush(5s);
  results.push_back(f);
  EXPECT_EQ(s.pending_output(), 0u);
  ::shutdown(peer, SHUT_WR);
  int eof = co_await s.fill(5s, 4096);
  results.push_back(eof);
}

TEST(Stream, FillConsumeWriteFlush) {
  Loop loop;
  SocketPair sp;
  Stream s(loop, sp.fd[0]);
  sp.fd[0] = -1;
  std::vector<int> results;
  std::string seen;
  run_on_loop(loop, stream_basics(s, sp.fd[1], results, seen));
  EXPECT_EQ(results, (std::vector<int>{-ETIME, 10, -ENOBUFS, 3, 0, 0}));
  EXPECT_EQ(seen, "0123456789");
  char buf[32] = {};
  EXPECT_EQ(::read(sp.fd[1], buf, sizeof buf), 11);
  EXPECT_STREQ(buf, "hello world");
}

Task<void> hold_input(Stream& s, int& res) {
  res = co_await s.fill(5s, 4096);
}

Task<void> backpressure_test(Loop& loop, Stream& a, Stream& b, Stream& c, int peer_a, int peer_b,
                             int peer_c, std::vector<int>& results, std::string& c_got) {
  // A and B each keep one of the two receive buffers (their input is not consumed).
  EXPECT_EQ(::write(peer_a, "aaaa", 4), 4);
  EXPECT_EQ(::write(peer_b, "bbbb", 4), 4);
  int ra = co_await a.fill(5s, 4096);
  int rb = co_await b.fill(5s, 4096);
  results.push_back(ra);
  results.push_back(rb);
  // C's receive finds no buffer: it must wait (back-pressure), not fail.
  int rc = 1;
  loop.spawn(hold_input(c, rc));
  EXPECT_EQ(::write(peer_c, "cccc", 4), 4);
  Sleep pause(loop, 30ms);
  co_await pause;
  EXPECT_EQ(rc, 1) << "the read should still be waiting for a buffer";
  EXPECT_TRUE(c.reading());
  // A is done with its bytes: its buffer goes back and C gets it.
  a.consume(a.input().size());
  for (int i = 0; i < 1000 && rc == 1; ++i) {
    Sleep s(loop, 1ms);
    co_await s;
  }
  results.push_back(rc);
  c_got = std::string(c.input());
  c.consume(c.input().size());
  b.consume(b.input().size());
}

TEST(Stream, NoFreeReceiveBufferIsBackPressureNotFailure) {
  Loop::Options o;
  o.entries = 64;
  o.buffer_count = 2;
  o.buffer_size = 4096;
  Loop loop(o);
  SocketPair pa, pb, pc;
  Stream a(loop, pa.fd[0]), b(loop, pb.fd[0]), c(loop, pc.fd[0]);
  pa.fd[0] = pb.fd[0] = pc.fd[0] = -1;
  std::vector<int> results;
  std::string c_got;
  run_on_loop(loop, backpressure_test(loop, a, b, c, pa.fd[1], pb.fd[1], pc.fd[1], results, c_got));
  EXPECT_EQ(results, (std::vector<int>{4, 4, 4}));
  EXPECT_EQ(c_got, "cccc");
}

Task<void> cancel_while_starved(Loop& loop, Stream& a, Stream& c, int peer_a, int peer_c,
                                int& res) {
  EXPECT_EQ(::write(peer_a, "a", 1), 1);
  int ra = co_await a.fill(5s, 4096);
  EXPECT_EQ(ra, 1);
  res = 1;
  loop.spawn(hold_input(c, res));
  EXPECT_EQ(::write(peer_c, "c", 1), 1);
  Sleep pause(loop, 20ms);
  co_await pause;
  c.cancel_read();  // while it waits for a buffer
  for (int i = 0; i < 1000 && res == 1; ++i) {
    Sleep s(loop, 1ms);
    co_await s;
  }
  a.consume(1);
}

TEST(Stream, CancelWhileWaitingForABuffer) {
  Loop::Options o;
  o.entries = 64;
  o.buffer_count = 1;
  o.buffer_size = 4096;
  Loop loop(o);
  SocketPair pa, pc;
  Stream a(loop, pa.fd[0]), c(loop, pc.fd[0]);
  pa.fd[0] = pc.fd[0] = -1;
  int res = 0;
  run_on_loop(loop, cancel_while_starved(loop, a, c, pa.fd[1], pc.fd[1], res));
  EXPECT_EQ(res, -ECANCELED);
}

Task<void> flush_timeout(Stream& s, int& res, size_t& pending_after) {
  s.write(std::string(16 << 20, 'x'));  // far more than the socket buffers hold
  res = co_await s.flush(50ms);
  pending_after = s.pending_output();
}

TEST(Stream, FlushToAPeerThatDoesNotReadTimesOut) {
  Loop loop;
  SocketPair sp;
  Stream s(loop, sp.fd[0]);
  sp.fd[0] = -1;
  int res = 0;
  size_t pending_after = 1;
  run_on_loop(loop, flush_timeout(s, res, pending_after));
  EXPECT_EQ(res, -ETIME);
  EXPECT_EQ(pending_after, 0u);
}

Task<void> discard_test(Stream& s, int peer, std::string& after) {
  EXPECT_EQ(::write(peer, "plaintext before STARTTLS", 25), 25);
  int n = co_await s.fill(5s, 4096);
  EXPECT_EQ(n, 25);
  s.discard_input();
  EXPECT_EQ(s.input(), "");
  EXPECT_EQ(::write(peer, "after", 5), 5);
  int m = co_await s.fill(5s, 4096);
  EXPECT_EQ(m, 5);
  after = std::string(s.input());
  s.consume(s.input().size());
}

TEST(Stream, DiscardInputDropsWhatWasBuffered) {
  Loop loop;
  SocketPair sp;
  Stream s(loop, sp.fd[0]);
  sp.fd[0] = -1;
  std::string after;
  run_on_loop(loop, discard_test(s, sp.fd[1], after));
  EXPECT_EQ(after, "after");
}

// --- post() -------------------------------------------------------------------------

struct ResumeHere final : Posted {
  std::coroutine_handle<> h;
  std::thread::id ran_on;
  void run() override {
    ran_on = std::this_thread::get_id();
    h.resume();
  }
};

// Suspends; another thread posts the resumption back to the loop.
struct ResumeFromThread {
  Loop& loop;
  ResumeHere& posted;
  std::thread& thread;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    posted.h = h;
    Loop* l = &loop;
    ResumeHere* p = &posted;
    thread = std::thread([l, p] {
      std::this_thread::sleep_for(10ms);
      l->post(p);
    });
  }
  void await_resume() const noexcept {}
};

struct Count final : Posted {
  std::atomic<int>* counter = nullptr;
  std::thread::id* loop_thread = nullptr;
  std::atomic<int>* wrong_thread = nullptr;
  void run() override {
    if (std::this_thread::get_id() != *loop_thread) wrong_thread->fetch_add(1);
    counter->fetch_add(1, std::memory_order_relaxed);
  }
};

Task<void> post_test(Loop& loop, ResumeHere& posted, std::thread& th, std::thread::id& resumed_on,
                     std::atomic<int>& counter, int expected) {
  co_await ResumeFromThread{loop, posted, th};
  resumed_on = std::this_thread::get_id();
  // Many posts from several threads at once: all run, on the loop.
  while (counter.load() < expected) {
    Sleep s(loop, 1ms);
    co_await s;
  }
}

TEST(Loop, PostFromAnotherThreadResumesOnTheLoop) {
  Loop loop;
  ResumeHere posted;
  std::thread th;
  std::thread::id resumed_on;
  std::thread::id loop_thread = std::this_thread::get_id();
  std::atomic<int> counter{0}, wrong{0};
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<Count> counts(kThreads * kEach);
  for (auto& c : counts) {
    c.counter = &counter;
    c.loop_thread = &loop_thread;
    c.wrong_thread = &wrong;
  }
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t)
    posters.emplace_back([&loop, &counts, t] {
      for (int i = 0; i < kEach; ++i) loop.post(&counts[static_cast<size_t>(t * kEach + i)]);
    });
  run_on_loop(loop, post_test(loop, posted, th, resumed_on, counter, kThreads * kEach));
  if (th.joinable()) th.join();
  for (auto& p : posters) p.join();
  EXPECT_EQ(posted.ran_on, loop_thread);
  EXPECT_EQ(resumed_on, loop_thread);
  EXPECT_EQ(counter.load(), kThreads * kEach);
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Loop, StopFromAnotherThread) {
  Loop loop;
  std::thread stopper([&loop] {
    std::this_thread::sleep_for(20ms);
    loop.stop();
  });
  bool hook_ran = false;
  loop.set_on_stop([&] { hook_ran = true; });
  loop.run();  // returns once stopped: nothing was spawned
  stopper.join();
  EXPECT_TRUE(loop.stopping());
  EXPECT_TRUE(hook_ran);
}

// --- Listener + Stream: echo over loopback -------------------------------------------

Task<void> echo_session(Loop& loop, int fd, int& sessions_done) {
  Stream s(loop, fd);
  for (;;) {
    int n = co_await s.fill(5s, 1 << 20);
    if (n <= 0) break;
    std::string_view in = s.input();
    s.write(in);
    s.consume(in.size());
    int w = co_await s.flush(5s);
    if (w < 0) break;
  }
  ++sessions_done;
}

Task<bool> read_exactly(Stream& s, size_t n, std::string& out) {
  while (s.input().size() < n) {
    int r = co_await s.fill(5s, 1 << 21);
    if (r <= 0) {
      ADD_FAILURE() << "fill: " << r << " with " << s.input().size() << " of " << n;
      co_return false;
    }
  }
  out.assign(s.input().substr(0, n));
  s.consume(n);
  co_return true;
}

Task<void> echo_client(Loop& loop, sockaddr_in addr, Listener& listener, int& sessions_done,
                       std::vector<std::string>& replies) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  Connect c(loop, fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr, 5s);
  int r = co_await c;
  EXPECT_EQ(r, 0);
  {
    Stream s(loop, fd);
    set_nodelay(fd);
    std::string big(100 * 1024, 'x');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
    for (std::string msg : {std::string("EHLO client.example\r\n"),
                            std::string("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"), big}) {
      s.write(msg);
      int f = co_await s.flush(5s);
      EXPECT_EQ(f, 0);
      std::string got;
      bool ok = co_await read_exactly(s, msg.size(), got);
      EXPECT_TRUE(ok);
      replies.push_back(got == msg ? "same" : "different");
    }
  }  // closes the client socket: the server session sees EOF
  while (sessions_done < 1) {
    Sleep s(loop, 1ms);
    co_await s;
  }
  listener.close();
}

TEST(Listener, EchoOverLoopback) {
  Loop loop;
  TestListenSocket ls;
  ASSERT_GE(ls.fd, 0);
  int sessions_done = 0;
  Listener listener(loop, ls.fd, [&loop, &sessions_done](int fd) {
    loop.spawn(echo_session(loop, fd, sessions_done));
  });
  listener.start();
  std::vector<std::string> replies;
  run_on_loop(loop, echo_client(loop, ls.addr, listener, sessions_done, replies));
  EXPECT_EQ(replies, (std::vector<std::string>{"same", "same", "same"}));
  EXPECT_EQ(sessions_done, 1);
}

// --- 10,000 connect/close cycles: nothing leaks --------------------------------------

struct DrainServer {
  int accepted = 0;
  int finished = 0;
  int errors = 0;
  std::set<Stream*> open;  // for the watchdog's on_stop: cancel what still waits
};

Task<void> read_until_eof(Loop& loop, int fd, DrainServer& srv) {
  Stream s(loop, fd);
  srv.open.insert(&s);
  for (;;) {
    int n = co_await s.fill(10s, 1 << 16);
    if (n < 0) ++srv.errors;
    if (n <= 0) break;
    s.consume(s.input().size());
  }
  srv.open.erase(&s);
  ++srv.finished;
}

Task<void> connect_close_cycles(Loop& loop, sockaddr_in addr, int cycles, DrainServer& srv,
                                int& connect_errors) {
  for (int i = 0; i < cycles && !loop.stopping(); ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ++connect_errors;
      continue;
    }
    Connect c(loop, fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr, 5s);
    int r = co_await c;
    if (r != 0) ++connect_errors;
    ::close(fd);
  }
  // Wait for the server side of every connection to see its EOF.
  while (!loop.stopping() &&
         (srv.accepted < cycles - connect_errors || srv.finished < srv.accepted)) {
    Sleep s(loop, 1ms);
    co_await s;
  }
}

TEST(Listener, TenThousandConnectCloseCyclesLeakNothing) {
  const int fds_before_everything = count_fds();
  constexpr int kCycles = 10000;
  DrainServer srv;
  int connect_errors = 0;
  {
    Loop loop;
    TestListenSocket ls;
    ASSERT_GE(ls.fd, 0);
    Listener listener(loop, ls.fd, [&loop, &srv](int fd) {
      ++srv.accepted;
      loop.spawn(read_until_eof(loop, fd, srv));
    });
    listener.start();
    loop.set_on_stop([&srv] {
      for (Stream* s : srv.open) s->cancel_read();
    });
    const int fds_before = count_fds();
    ASSERT_GT(fds_before, 0);
    run_on_loop(loop, connect_close_cycles(loop, ls.addr, kCycles, srv, connect_errors), 120s);
    EXPECT_EQ(connect_errors, 0);
    EXPECT_EQ(srv.accepted, kCycles);
    EXPECT_EQ(srv.finished, srv.accepted);
    EXPECT_EQ(srv.errors, 0);
    EXPECT_TRUE(srv.open.empty());
    EXPECT_EQ(loop.live_tasks(), 0u);
    EXPECT_EQ(count_fds(), fds_before);
    listener.close();
  }
  EXPECT_EQ(count_fds(), fds_before_everything);
}

}  // namespace
}  // namespace ringmail::rt
