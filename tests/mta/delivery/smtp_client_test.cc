// mta/delivery/smtp_client: the outbound SMTP client against a scripted fake server.
//
// Both ends run on one real Loop over a socketpair. The fake server answers each command
// line with the next reply of its script and records what the client sent, and in which
// read "batch" (a batch ends whenever the server flushes replies), so a test can tell a
// pipelined group from lock-step commands. A watchdog fails a test that hangs.
#include "mta/delivery/smtp_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "auth/sasl.h"
#include "mta/runtime/loop.h"
#include "mta/runtime/ops.h"
#include "mta/runtime/stream.h"
#include "mta/runtime/task.h"
#include "mta/runtime/tls.h"
#include "mta/server/tls_setup.h"
#include "tests/support/temp_dir.h"
#include "tests/support/watchdog.h"

namespace ringmail::delivery {
namespace {

using namespace std::chrono_literals;
using rt::Loop;
using rt::Stream;
using rt::Task;

// Script tokens besides plain replies:
//   "<stall>"      answer this command and the rest with nothing; wait for the hang-up
//   "<drop>"       hang up instead of answering this command
//   "!tls <reply>" send <reply>, then run the server side of a TLS handshake
constexpr const char* kStall = "<stall>";
constexpr const char* kDrop = "<drop>";

struct Fake {
  std::string greeting = "220 mx.example.test ESMTP\r\n";
  std::deque<std::string> replies;
  SSL_CTX* server_ctx = nullptr;
  SSL_CTX* client_ctx = nullptr;
  Timeouts timeouts;

  // Recorded by the server.
  std::vector<std::string> commands;
  std::vector<int> batches;  // batch in which each command arrived
  std::string body;          // the DATA phase exactly as received, final dot included
  bool tls_ok = false;
  bool server_done = false;

  // Recorded by the client coroutine.
  std::optional<Result<Capabilities>> greeted;
  std::vector<TransactionResult> sent;
  std::vector<Status> statuses;

  int batch_of(std::string_view prefix) const {
    for (size_t i = 0; i < commands.size(); ++i)
      if (commands[i].rfind(prefix, 0) == 0) return batches[i];
    return -1;
  }
};

Task<void> wait_for_eof(Stream& s) {
  for (;;) {
    s.consume(s.input().size());
    int n = co_await s.fill(10s, 1 << 20);
    if (n <= 0) break;
  }
}

Task<void> serve(Loop& loop, int fd, Fake& f) {
  Stream s(loop, fd);
  int batch = 0;
  bool data_mode = false;
  bool stall = f.greeting == kStall;
  if (!stall) {
    s.write(f.greeting);
    int r = co_await s.flush(5s);
    EXPECT_EQ(r, 0);
  }
  while (!stall) {
    std::string_view in = s.input();
    size_t lf = in.find('\n');
    if (lf == std::string_view::npos) {
      if (s.pending_output()) {
        int r = co_await s.flush(5s);
        if (r < 0) break;
        ++batch;
      }
      int n = co_await s.fill(10s, 1 << 20);
      if (n <= 0) break;
      continue;
    }
    std::string raw(in.substr(0, lf + 1));
    s.consume(lf + 1);
    std::string line =
        raw.substr(0, raw.size() - (raw.size() >= 2 && raw[raw.size() - 2] == '\r' ? 2 : 1));
    if (data_mode) {
      f.body += raw;
      if (line != ".") continue;
      data_mode = false;
    } else {
      f.commands.push_back(line);
      f.batches.push_back(batch);
    }
    std::string reply = f.replies.empty() ? "554 5.5.0 unscripted\r\n" : f.replies.front();
    if (!f.replies.empty()) f.replies.pop_front();
    if (reply == kStall || reply == kDrop) {
      // Replies to the commands before this one still go out.
      int r = co_await s.flush(5s);
      EXPECT_EQ(r, 0);
      stall = reply == kStall;
      break;
    }
    if (reply.rfind("!tls ", 0) == 0) {
      s.write(reply.substr(5));
      int r = co_await s.flush(5s);
      EXPECT_EQ(r, 0);
      int hs = co_await s.start_tls(f.server_ctx, true, 5s);
      f.tls_ok = hs == 0;
      if (hs != 0) break;
      continue;
    }
    if (reply.rfind("354", 0) == 0) data_mode = true;
    s.write(reply);
    if (line == "QUIT") {
      int r = co_await s.flush(5s);
      EXPECT_EQ(r, 0);
      // Wait for close_notify or the hang-up, as a real server would.
      Task<void> w = wait_for_eof(s);
      co_await w;
      break;
    }
  }
  if (stall) {
    Task<void> w = wait_for_eof(s);
    co_await w;
  }
  f.server_done = true;
}

using ringmail::testing::Watchdog;

using ClientFn = Task<void> (*)(Loop&, int, Fake&);

// The client's coroutine owns its SmtpClient, so its end closes the socket and the fake
// server sees EOF.
Task<void> finish(Loop& loop, Watchdog& wd, Fake& f, int fd, ClientFn fn) {
  Task<void> body = fn(loop, fd, f);
  co_await body;
  // Give the server time to notice the hang-up before the watchdog is disarmed.
  for (int i = 0; i < 200 && !f.server_done; ++i) {
    rt::Sleep s(loop, 5ms);
    co_await s;
  }
  wd.disarm();
  loop.stop();
}

void run(Fake& f, ClientFn fn) {
  Loop loop;
  int fd[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
  Watchdog wd(loop, 20s);
  loop.spawn(serve(loop, fd[0], f));
  loop.spawn(finish(loop, wd, f, fd[1], fn));
  loop.run();
  EXPECT_FALSE(wd.fired());
  EXPECT_TRUE(f.server_done);
}

Timeouts short_timeouts() {
  Timeouts t;
  t.connect = t.greeting = t.command = t.mail = t.rcpt = t.data_init = t.data_block = t.data_final =
      t.quit = 5s;
  return t;
}

const char* const kEhloFull =
    "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n"
    "250-DSN\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";
const char* const kEhloPlain = "250-mx.example.test\r\n250 SIZE 1000000\r\n";

// The message every transaction test sends unless it sets its own.
struct Msg {
  std::string sender = "alice@client.test";
  std::vector<std::string> rcpts = {"bob@example.test"};
  std::string data = "Subject: hi\r\n\r\nHello\r\n";
  MailParams mail;
  std::vector<RcptParams> params;
  void build() {
    mail.sender = sender;
    params.clear();
    for (const auto& r : rcpts) params.push_back(RcptParams{r, {}, 0});
  }
};
Msg g_msg;  // set by the test before run(); the coroutines read it

// greet, send g_msg, quit.
Task<void> greet_send_quit(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  if (f.greeted->ok()) {
    TransactionResult t = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
    f.sent.push_back(std::move(t));
  }
  co_await c.quit();
}

class SmtpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_msg = Msg{};
    g_msg.build();
    f_.timeouts = short_timeouts();
  }
  Fake f_;
};

Task<void> client_greet_learns_capabilities(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  co_await c.quit();
}

TEST_F(SmtpClientTest, GreetLearnsCapabilities) {
  f_.replies = {kEhloFull, "221 bye\r\n"};
  run(f_, client_greet_learns_capabilities);
  ASSERT_TRUE(f_.greeted && f_.greeted->ok()) << f_.greeted->error().message;
  const Capabilities& caps = f_.greeted->value();
  EXPECT_TRUE(caps.esmtp);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_EQ(caps.size_limit, 1000000u);
  EXPECT_TRUE(caps.dsn);
  EXPECT_EQ(f_.commands, (std::vector<std::string>{"EHLO client.test", "QUIT"}));
}

TEST_F(SmtpClientTest, EhloRefusedFallsBackToHeloAndLockStep) {
  f_.replies = {"502 5.5.2 what?\r\n", "250 mx.example.test\r\n", "250 ok\r\n", "250 ok\r\n",
                "354 go\r\n",          "250 queued\r\n",          "221 bye\r\n"};
  run(f_, greet_send_quit);
  ASSERT_TRUE(f_.greeted->ok()) << f_.greeted->error().message;
  EXPECT_FALSE(f_.greeted->value().esmtp);
  ASSERT_EQ(f_.sent.size(), 1u);
  EXPECT_EQ(f_.sent[0].message.outcome, Outcome::delivered);
  EXPECT_EQ(f_.sent[0].recipients[0].outcome, Outcome::delivered);
  EXPECT_FALSE(f_.sent[0].dsn_passed_on);
  // No ESMTP: no parameters at all, one command per round trip.
  EXPECT_EQ(f_.commands, (std::vector<std::string>{"EHLO client.test", "HELO client.test",
                                                   "MAIL FROM:<alice@client.test>",
                                                   "RCPT TO:<bob@example.test>", "DATA", "QUIT"}));
  EXPECT_LT(f_.batch_of("MAIL"), f_.batch_of("RCPT"));
  EXPECT_LT(f_.batch_of("RCPT"), f_.batch_of("DATA"));
}

TEST_F(SmtpClientTest, Greeting554IsPermanentForTheHost) {
  f_.greeting = "554 5.7.1 no service for you\r\n";
  f_.replies = {"221 bye\r\n"};
  run(f_, greet_send_quit);
  ASSERT_FALSE(f_.greeted->ok());
  EXPECT_EQ(f_.greeted->error().code, 554);
  EXPECT_EQ(outcome_of(f_.greeted->error()), Outcome::failed);
  EXPECT_EQ(f_.greeted->error().message, "554 5.7.1 no service for you");
  EXPECT_EQ(f_.commands, std::vector<std::string>{"QUIT"});
}

TEST_F(SmtpClientTest, GreetingTimeoutIsTemporary) {
  f_.greeting = kStall;
  f_.timeouts.greeting = 200ms;
  run(f_, greet_send_quit);
  ASSERT_FALSE(f_.greeted->ok());
  EXPECT_EQ(f_.greeted->error().code, 0);
  EXPECT_EQ(outcome_of(f_.greeted->error()), Outcome::deferred);
  EXPECT_EQ(f_.greeted->error().message, "timeout waiting for the greeting");
}

TEST_F(SmtpClientTest, GarbageGreetingIsAProtocolError) {
  f_.greeting = "HTTP/1.0 400 Bad Request\r\n";
  run(f_, greet_send_quit);
  ASSERT_FALSE(f_.greeted->ok());
  EXPECT_EQ(outcome_of(f_.greeted->error()), Outcome::deferred);
  EXPECT_NE(f_.greeted->error().message.find("protocol error waiting for the greeting"),
            std::string::npos)
      << f_.greeted->error().message;
  EXPECT_TRUE(f_.commands.empty());
}

TEST_F(SmtpClientTest, TooBigForTheServerIsRefusedBeforeSending) {
  f_.replies = {"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n", "221 bye\r\n"};
  g_msg.data = "Subject: big\r\n\r\n" + std::string(200, 'x') + "\r\n";
  run(f_, greet_send_quit);
  ASSERT_EQ(f_.sent.size(), 1u);
  const TransactionResult& t = f_.sent[0];
  EXPECT_EQ(t.message.outcome, Outcome::failed);
  EXPECT_EQ(t.message.status, "5.3.4");
  EXPECT_EQ(t.message.code, 0);
  EXPECT_EQ(t.recipients[0].status, "5.3.4");
  EXPECT_EQ(f_.commands, (std::vector<std::string>{"EHLO client.test", "QUIT"}));
}

TEST_F(SmtpClientTest, Smtputf8NeededButNotOfferedBouncesWithoutSending) {
  f_.replies = {kEhloPlain, "221 bye\r\n"};
  g_msg.rcpts = {"用户@example.test", "bob@example.test"};
  g_msg.build();
  g_msg.mail.smtputf8 = true;
  run(f_, greet_send_quit);
  ASSERT_EQ(f_.sent.size(), 1u);
  const TransactionResult& t = f_.sent[0];
  EXPECT_EQ(t.message.outcome, Outcome::failed);
  EXPECT_EQ(t.message.status, "5.6.7");
  ASSERT_EQ(t.recipients.size(), 2u);
  EXPECT_EQ(t.recipients[0].status, "5.6.7");
  EXPECT_EQ(t.recipients[1].status, "5.6.7");
  EXPECT_EQ(f_.commands, (std::vector<std::string>{"EHLO client.test", "QUIT"}));
}

TEST_F(SmtpClientTest, Smtputf8FlagOnAsciiMailStillGoesToAnOldServer) {
  f_.replies = {kEhloPlain, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n", "221 bye\r\n"};
  g_msg.mail.smtputf8 = true;
  run(f_, greet_send_quit);
  ASSERT_EQ(f_.sent.size(), 1u);
  EXPECT_EQ(f_.sent[0].message.outcome, Outcome::delivered);
  ASSERT_GE(f_.commands.size(), 2u);
  EXPECT_EQ(f_.commands[1], "MAIL FROM:<alice@client.test> SIZE=22");
}

TEST_F(SmtpClientTest, PipelinedWithMixedRecipientOutcomes) {
  f_.replies = {kEhloFull,
                "250 2.1.0 ok\r\n",
                "250 2.1.5 ok\r\n",
                "550 5.1.1 no such user\r\n",
                "450 4.2.1 try later\r\n",
                "354 go ahead\r\n",
                "250 2.0.0 queued as ABC\r\n",
                "221 bye\r\n"};
  g_msg.rcpts = {"a@example.test", "b@example.test", "c@example.test"};
  g_msg.build();
  g_msg.mail.body = queue::BodyType::eight_bit_mime;
  run(f_, greet_send_quit);
  ASSERT_EQ(f_.sent.size(), 1u);
  const TransactionResult& t = f_.sent[0];
  EXPECT_EQ(t.message.outcome, Outcome::delivered);
  EXPECT_EQ(t.message.text, "250 2.0.0 queued as ABC");
  ASSERT_EQ(t.recipients.size(), 3u);
  EXPECT_EQ(t.recipients[0].outcome, Outcome::delivered);
  EXPECT_EQ(t.recipients[0].code, 250);
  EXPECT_EQ(t.recipients[0].text, "250 2.0.0 queued as ABC");
  EXPECT_EQ(t.recipients[1].outcome, Outcome::failed);
  EXPECT_EQ(t.recipients[1].code, 550);
  EXPECT_EQ(t.recipients[1].status, "5.1.1");
  EXPECT_EQ(t.recipients[1].text, "550 5.1.1 no such user");
  EXPECT_EQ(t.recipients[2].outcome, Outcome::deferred);
  EXPECT_EQ(t.recipients[2].status, "4.2.1");
  EXPECT_TRUE(t.dsn_passed_on);
  ASSERT_EQ(f_.commands.size(), 7u);
  EXPECT_EQ(f_.commands[1], "MAIL FROM:<alice@client.test> SIZE=22 BODY=8BITMIME");
  // RFC 2920: MAIL, the RCPTs and DATA reached the server before it answered any of them.
  int b = f_.batch_of("MAIL");
  for (size_t i = 1; i <= 5; ++i) EXPECT_EQ(f_.batches[i], b) << f_.commands[i];
  EXPECT_EQ(f_.commands[5], "DATA");
  EXPECT_EQ(f_.body, "Subject: hi\r\n\r\nHello\r\n.\r\n");
}

TEST_F(SmtpClientTest, MailRefusedFailsEveryRecipient) {
  f_.replies = {kEhloFull, "553 5.7.1 sender refused\r\n", "503 5.5.1 need MAIL\r\n",
                "554 5.5.1 no valid recipients\r\n", "221 bye\r\n"};
  run(f_, greet_send_quit);
  const TransactionResult& t = f_.sent.at(0);
  EXPECT_EQ(t.message.code, 553);
  EXPECT_EQ(t.recipients[0].code, 553);
  EXPECT_EQ(t.recipients[0].outcome, Outcome::failed);
  EXPECT_EQ(f_.commands.back(), "QUIT");
}

Task<void> client_data_refused_applies_to_accepted_recipients_and_next_send_resets(Loop& loop,
                                                                                   int fd,
                                                                                   Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  TransactionResult t1 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t1));
  TransactionResult t2 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t2));
  co_await c.quit();
}

TEST_F(SmtpClientTest, DataRefusedAppliesToAcceptedRecipientsAndNextSendResets) {
  f_.replies = {kEhloFull,
                "250 ok\r\n",
                "250 ok\r\n",
                "550 5.1.1 unknown\r\n",
                "554 5.6.0 content refused\r\n",
                "250 2.0.0 reset\r\n",  // RSET before the second message
                "250 ok\r\n",
                "250 ok\r\n",
                "550 5.1.1 unknown\r\n",
                "354 go\r\n",
                "250 2.0.0 done\r\n",
                "221 bye\r\n"};
  g_msg.rcpts = {"a@example.test", "b@example.test"};
  g_msg.build();
  run(f_, client_data_refused_applies_to_accepted_recipients_and_next_send_resets);
  ASSERT_EQ(f_.sent.size(), 2u);
  EXPECT_EQ(f_.sent[0].message.code, 554);
  EXPECT_EQ(f_.sent[0].recipients[0].code, 554);
  EXPECT_EQ(f_.sent[0].recipients[0].outcome, Outcome::failed);
  EXPECT_EQ(f_.sent[0].recipients[0].status, "5.6.0");
  EXPECT_EQ(f_.sent[0].recipients[1].code, 550);
  EXPECT_EQ(f_.sent[1].message.outcome, Outcome::delivered);
  EXPECT_EQ(f_.sent[1].recipients[0].outcome, Outcome::delivered);
  EXPECT_EQ(f_.sent[1].recipients[1].outcome, Outcome::failed);
  ASSERT_GE(f_.commands.size(), 6u);
  EXPECT_EQ(f_.commands[5], "RSET");
}

Task<void> client_send_twice(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  TransactionResult t1 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t1));
  TransactionResult t2 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t2));
  co_await c.quit();
}

// Lock-step: with every RCPT refused there is no DATA; the open transaction is reset
// before the next message.
TEST_F(SmtpClientTest, NoRecipientAcceptedSkipsDataAndResetsBeforeTheNext) {
  f_.replies = {kEhloPlain,
                "250 ok\r\n",
                "550 5.1.1 unknown\r\n",
                "552 5.5.3 too many\r\n",
                "250 reset\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 ok\r\n",
                "221 bye\r\n"};
  g_msg.rcpts = {"a@example.test", "b@example.test"};
  g_msg.build();
  run(f_, client_send_twice);
  ASSERT_EQ(f_.sent.size(), 2u);
  const TransactionResult& t = f_.sent[0];
  EXPECT_EQ(t.recipients[0].outcome, Outcome::failed);
  // RFC 5321 4.5.3.1.10: 552 to RCPT means too many recipients, so it is temporary.
  EXPECT_EQ(t.recipients[1].outcome, Outcome::deferred);
  EXPECT_EQ(t.recipients[1].status, "4.5.3");
  EXPECT_EQ(t.message.outcome, Outcome::deferred);
  EXPECT_EQ(t.message.text, "no recipient accepted");
  EXPECT_EQ(f_.sent[1].message.outcome, Outcome::delivered);
  EXPECT_EQ(f_.commands, (std::vector<std::string>{
                             "EHLO client.test", "MAIL FROM:<alice@client.test> SIZE=22",
                             "RCPT TO:<a@example.test>", "RCPT TO:<b@example.test>", "RSET",
                             "MAIL FROM:<alice@client.test> SIZE=22", "RCPT TO:<a@example.test>",
                             "RCPT TO:<b@example.test>", "DATA", "QUIT"}));
}

Task<void> client_final_dot_4_5_1_defers_and_the_connection_is_reused(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  TransactionResult t1 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t1));
  EXPECT_TRUE(c.usable());
  TransactionResult t2 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t2));
  co_await c.quit();
}

TEST_F(SmtpClientTest, FinalDot451DefersAndTheConnectionIsReused) {
  f_.replies = {kEhloFull,    "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "451 4.3.0 disk full\r\n",
                "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n", "221 bye\r\n"};
  run(f_, client_final_dot_4_5_1_defers_and_the_connection_is_reused);
  ASSERT_EQ(f_.sent.size(), 2u);
  EXPECT_EQ(f_.sent[0].message.outcome, Outcome::deferred);
  EXPECT_EQ(f_.sent[0].recipients[0].outcome, Outcome::deferred);
  EXPECT_EQ(f_.sent[0].recipients[0].status, "4.3.0");
  EXPECT_EQ(f_.sent[0].recipients[0].text, "451 4.3.0 disk full");
  EXPECT_EQ(f_.sent[1].recipients[0].outcome, Outcome::delivered);
  // The transaction ended with the final reply: no RSET needed before the next one.
  for (const auto& c : f_.commands) EXPECT_NE(c, "RSET");
}

TEST_F(SmtpClientTest, DotStuffingAndLineEnds) {
  f_.replies = {kEhloFull, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n", "221 bye\r\n"};
  g_msg.data = "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nbare lf\nlast without end";
  run(f_, greet_send_quit);
  EXPECT_EQ(f_.sent.at(0).message.outcome, Outcome::delivered);
  EXPECT_EQ(
      f_.body,
      "Subject: dots\r\n\r\n..hidden\r\n...two\r\n..\r\nbare lf\r\nlast without end\r\n.\r\n");
}

// Many sends' worth of body: nothing lost or reordered between flushes.
TEST_F(SmtpClientTest, LargeBodyArrivesIntact) {
  f_.replies = {kEhloFull, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n", "221 bye\r\n"};
  std::string data = "Subject: big\r\n\r\n";
  for (int i = 0; i < 4000; ++i)
    data += (i % 7 == 0 ? "." : "") + std::to_string(i) + std::string(70, 'a' + i % 26) + "\r\n";
  g_msg.data = data;
  run(f_, greet_send_quit);
  EXPECT_EQ(f_.sent.at(0).message.outcome, Outcome::delivered);
  std::string want;
  for (size_t i = 0; i < data.size();) {
    size_t lf = data.find('\n', i);
    if (data[i] == '.') want += '.';
    want.append(data, i, lf + 1 - i);
    i = lf + 1;
  }
  want += ".\r\n";
  EXPECT_EQ(f_.body.size(), want.size());
  EXPECT_TRUE(f_.body == want);
}

Task<void> client_dsn_parameters_passed_on_verbatim_when_offered(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  MailParams m;
  m.sender = "alice@client.test";
  m.ret = queue::Ret::hdrs;
  m.envid = "QQ+2B314";
  std::vector<RcptParams> r = {{"bob@example.test", "rfc822;bob+2Bx@example.test",
                                queue::kNotifySuccess | queue::kNotifyFailure},
                               {"carol@example.test", "", queue::kNotifyNever}};
  TransactionResult t = co_await c.send(m, r, g_msg.data);
  f.sent.push_back(std::move(t));
  co_await c.quit();
}

TEST_F(SmtpClientTest, DsnParametersPassedOnVerbatimWhenOffered) {
  f_.replies = {kEhloFull,    "250 ok\r\n", "250 ok\r\n", "250 ok\r\n",
                "354 go\r\n", "250 ok\r\n", "221 bye\r\n"};
  run(f_, client_dsn_parameters_passed_on_verbatim_when_offered);
  ASSERT_EQ(f_.commands.size(), 6u);
  EXPECT_EQ(f_.commands[1], "MAIL FROM:<alice@client.test> SIZE=22 RET=HDRS ENVID=QQ+2B314");
  EXPECT_EQ(f_.commands[2],
            "RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@example.test");
  EXPECT_EQ(f_.commands[3], "RCPT TO:<carol@example.test> NOTIFY=NEVER");
  EXPECT_TRUE(f_.sent.at(0).dsn_passed_on);
}

Task<void> client_no_dsn_parameters_without_dsn(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  MailParams m;
  m.sender = "";
  m.ret = queue::Ret::full;
  m.envid = "abc";
  std::vector<RcptParams> r = {
      {"bob@example.test", "rfc822;bob@example.test", queue::kNotifySuccess}};
  TransactionResult t = co_await c.send(m, r, g_msg.data);
  f.sent.push_back(std::move(t));
  co_await c.quit();
}

TEST_F(SmtpClientTest, NoDsnParametersWithoutDsn) {
  f_.replies = {kEhloPlain, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n", "221 bye\r\n"};
  run(f_, client_no_dsn_parameters_without_dsn);
  ASSERT_EQ(f_.commands.size(), 5u);
  EXPECT_EQ(f_.commands[1], "MAIL FROM:<> SIZE=22");
  EXPECT_EQ(f_.commands[2], "RCPT TO:<bob@example.test>");
  EXPECT_FALSE(f_.sent.at(0).dsn_passed_on);
  EXPECT_EQ(f_.sent.at(0).message.outcome, Outcome::delivered);
}

Task<void> client_rcpt_timeout_defers(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  TransactionResult t = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t));
  EXPECT_FALSE(c.usable());
  co_await c.quit();  // nothing to say on a broken connection; must not wait
}

TEST_F(SmtpClientTest, RcptTimeoutDefers) {
  f_.replies = {kEhloPlain, "250 ok\r\n", kStall};
  f_.timeouts.rcpt = 200ms;
  run(f_, client_rcpt_timeout_defers);
  const TransactionResult& t = f_.sent.at(0);
  EXPECT_EQ(t.message.outcome, Outcome::deferred);
  EXPECT_EQ(t.recipients[0].outcome, Outcome::deferred);
  EXPECT_EQ(t.recipients[0].code, 0);
  EXPECT_EQ(t.recipients[0].status, "4.4.2");
  EXPECT_EQ(t.recipients[0].text, "timeout after RCPT");
}

TEST_F(SmtpClientTest, ConnectionLostAfterData) {
  f_.replies = {kEhloFull, "250 ok\r\n", "250 ok\r\n", kDrop};
  g_msg.rcpts = {"a@example.test", "b@example.test"};
  g_msg.build();
  f_.replies.insert(f_.replies.begin() + 3, "550 5.1.1 unknown\r\n");
  run(f_, greet_send_quit);
  const TransactionResult& t = f_.sent.at(0);
  EXPECT_EQ(t.message.outcome, Outcome::deferred);
  EXPECT_EQ(t.message.text, "connection lost after DATA");
  EXPECT_EQ(t.recipients[0].outcome, Outcome::deferred);
  EXPECT_EQ(t.recipients[0].text, "connection lost after DATA");
  // A refusal the server already gave stands.
  EXPECT_EQ(t.recipients[1].outcome, Outcome::failed);
  EXPECT_EQ(t.recipients[1].code, 550);
}

TEST_F(SmtpClientTest, ConnectionLostAfterEndOfData) {
  f_.replies = {kEhloFull, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", kDrop};
  run(f_, greet_send_quit);
  const TransactionResult& t = f_.sent.at(0);
  EXPECT_EQ(t.recipients[0].outcome, Outcome::deferred);
  EXPECT_EQ(t.recipients[0].text, "connection lost after end of data");
}

TEST_F(SmtpClientTest, FinalReplyTimeout) {
  f_.replies = {kEhloFull, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", kStall};
  f_.timeouts.data_final = 200ms;
  run(f_, greet_send_quit);
  EXPECT_EQ(f_.sent.at(0).recipients[0].text, "timeout after end of data");
  EXPECT_EQ(f_.body, "Subject: hi\r\n\r\nHello\r\n.\r\n");
}

Task<void> client_reply_4_2_1_makes_the_connection_unusable(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  TransactionResult t = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t));
  EXPECT_FALSE(c.usable());
  TransactionResult t2 = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t2));
  co_await c.quit();
}

TEST_F(SmtpClientTest, Reply421MakesTheConnectionUnusable) {
  f_.replies = {kEhloPlain, "421 4.3.2 shutting down\r\n", "221 bye\r\n"};
  run(f_, client_reply_4_2_1_makes_the_connection_unusable);
  EXPECT_EQ(f_.sent.at(0).recipients[0].outcome, Outcome::deferred);
  EXPECT_EQ(f_.sent.at(0).recipients[0].code, 421);
  EXPECT_EQ(f_.sent.at(1).recipients[0].text, "connection not usable");
}

Task<void> client_auth_refused_without_tls(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  Status s = co_await c.auth_plain("user", "secret");
  f.statuses.push_back(s);
  co_await c.quit();
}

TEST_F(SmtpClientTest, AuthRefusedWithoutTls) {
  f_.replies = {"250-mx\r\n250 AUTH PLAIN LOGIN\r\n", "221 bye\r\n"};
  run(f_, client_auth_refused_without_tls);
  ASSERT_EQ(f_.statuses.size(), 1u);
  EXPECT_FALSE(f_.statuses[0].ok());
  EXPECT_EQ(f_.commands, (std::vector<std::string>{"EHLO client.test", "QUIT"}));
}

Task<void> client_auth_plain_over_plaintext_when_allowed(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  Status s = co_await c.auth_plain("user", "secret", true);
  f.statuses.push_back(s);
  co_await c.quit();
}

TEST_F(SmtpClientTest, AuthPlainOverPlaintextWhenAllowed) {
  f_.replies = {"250-mx\r\n250 AUTH=PLAIN\r\n", "535 5.7.8 bad credentials\r\n", "221 bye\r\n"};
  run(f_, client_auth_plain_over_plaintext_when_allowed);
  ASSERT_EQ(f_.statuses.size(), 1u);
  ASSERT_FALSE(f_.statuses[0].ok());
  EXPECT_EQ(f_.statuses[0].error().code, 535);
  ASSERT_EQ(f_.commands.size(), 3u);
  EXPECT_EQ(f_.commands[1], "AUTH PLAIN " + auth::encode_base64(std::string("\0user\0secret", 12)));
}

class SmtpClientTlsTest : public SmtpClientTest {
 protected:
  void SetUp() override {
    SmtpClientTest::SetUp();
    std::string cert = dir_.path() + "/cert.pem", key = dir_.path() + "/key.pem";
    ASSERT_TRUE(server::make_self_signed("mx.example.test", cert, key).ok());
    auto ctx = rt::make_server_tls(cert, key);
    ASSERT_TRUE(ctx.ok()) << ctx.error().message;
    server_ctx_ = std::move(*ctx);
    client_ctx_ = rt::make_client_tls();
    f_.server_ctx = server_ctx_.get();
    f_.client_ctx = client_ctx_.get();
  }
  testing::TempDir dir_;
  rt::TlsContextPtr server_ctx_, client_ctx_;
};

Task<void> tls_session(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  EXPECT_TRUE(c.capabilities().starttls);
  EXPECT_FALSE(c.capabilities().has_auth("PLAIN"));
  Status s = co_await c.starttls(f.client_ctx, "mx.example.test");
  f.statuses.push_back(s);
  if (!s.ok()) co_return;
  EXPECT_NE(c.tls(), nullptr);
  // Re-learnt after TLS: STARTTLS gone, AUTH offered.
  EXPECT_FALSE(c.capabilities().starttls);
  EXPECT_TRUE(c.capabilities().has_auth("PLAIN"));
  Status a = co_await c.auth_plain("relay", "pw");
  f.statuses.push_back(a);
  TransactionResult t = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t));
  co_await c.quit();
}

TEST_F(SmtpClientTlsTest, StartTlsThenEhloAgainThenAuthAndSend) {
  f_.replies = {"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
                "!tls 220 2.0.0 go ahead\r\n",
                "250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
                "235 2.7.0 ok\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 2.0.0 queued\r\n",
                "221 bye\r\n"};
  run(f_, tls_session);
  EXPECT_TRUE(f_.tls_ok);
  ASSERT_EQ(f_.statuses.size(), 2u);
  EXPECT_TRUE(f_.statuses[0].ok()) << f_.statuses[0].error().message;
  EXPECT_TRUE(f_.statuses[1].ok()) << f_.statuses[1].error().message;
  ASSERT_EQ(f_.sent.size(), 1u);
  EXPECT_EQ(f_.sent[0].message.outcome, Outcome::delivered);
  ASSERT_GE(f_.commands.size(), 4u);
  EXPECT_EQ(f_.commands[1], "STARTTLS");
  EXPECT_EQ(f_.commands[2], "EHLO client.test");
  EXPECT_EQ(f_.commands[3].rfind("AUTH PLAIN ", 0), 0u);
  EXPECT_EQ(f_.body, "Subject: hi\r\n\r\nHello\r\n.\r\n");
}

Task<void> client_start_tls_4_5_4_leaves_plaintext_usable(Loop& loop, int fd, Fake& f) {
  SmtpClient c(loop, fd, f.timeouts);
  Result<Capabilities> g = co_await c.greet("client.test");
  f.greeted = g;
  Status s = co_await c.starttls(f.client_ctx, "mx.example.test");
  f.statuses.push_back(s);
  EXPECT_TRUE(c.usable());
  TransactionResult t = co_await c.send(g_msg.mail, g_msg.params, g_msg.data);
  f.sent.push_back(std::move(t));
  co_await c.quit();
}

TEST_F(SmtpClientTlsTest, StartTls454LeavesPlaintextUsable) {
  f_.replies = {"250-mx\r\n250 STARTTLS\r\n",
                "454 4.7.0 TLS not available\r\n",
                "250 ok\r\n",
                "250 ok\r\n",
                "354 go\r\n",
                "250 ok\r\n",
                "221 bye\r\n"};
  run(f_, client_start_tls_4_5_4_leaves_plaintext_usable);
  ASSERT_FALSE(f_.statuses.at(0).ok());
  EXPECT_EQ(f_.statuses[0].error().code, 454);
  EXPECT_EQ(f_.sent.at(0).message.outcome, Outcome::delivered);
}

TEST(SmtpClientHelpers, NeedsSmtputf8LooksAtAddressesAndHeaders) {
  MailParams m;
  m.sender = "a@x.test";
  std::vector<RcptParams> r = {{"b@y.test", "", 0}};
  EXPECT_FALSE(needs_smtputf8(m, r, "Subject: é\r\n\r\n"));  // not flagged
  m.smtputf8 = true;
  EXPECT_FALSE(needs_smtputf8(m, r, "Subject: x\r\n\r\nbody é\r\n"));
  EXPECT_TRUE(needs_smtputf8(m, r, "Subject: é\r\n\r\nbody\r\n"));
  r[0].address = "ü@y.test";
  EXPECT_TRUE(needs_smtputf8(m, r, "Subject: x\r\n\r\n"));
}

Task<void> connect_twice(Loop& loop, const sockaddr_in& open_addr, const sockaddr_in& closed_addr,
                         std::vector<Result<int>>& out) {
  Result<int> a = co_await connect_to(loop, reinterpret_cast<const sockaddr*>(&open_addr),
                                      sizeof open_addr, 2s);
  out.push_back(a);
  Result<int> b = co_await connect_to(loop, reinterpret_cast<const sockaddr*>(&closed_addr),
                                      sizeof closed_addr, 2s);
  out.push_back(b);
  loop.stop();
}

TEST(SmtpClientHelpers, ConnectToReportsTheFdOrTheErrno) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in open_addr{};
  open_addr.sin_family = AF_INET;
  open_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&open_addr), sizeof open_addr), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  socklen_t len = sizeof open_addr;
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&open_addr), &len), 0);
  // A port nobody listens on: bound but not listening, so nothing else can take it.
  int cfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in closed_addr = open_addr;
  closed_addr.sin_port = 0;
  ASSERT_EQ(::bind(cfd, reinterpret_cast<sockaddr*>(&closed_addr), sizeof closed_addr), 0);
  len = sizeof closed_addr;
  ASSERT_EQ(::getsockname(cfd, reinterpret_cast<sockaddr*>(&closed_addr), &len), 0);
  Loop loop;
  std::vector<Result<int>> out;
  loop.spawn(connect_twice(loop, open_addr, closed_addr, out));
  loop.run();
  ASSERT_EQ(out.size(), 2u);
  ASSERT_TRUE(out[0].ok()) << out[0].error().message;
  EXPECT_GE(out[0].value(), 0);
  ::close(out[0].value());
  ASSERT_FALSE(out[1].ok());
  EXPECT_EQ(out[1].error().code, ECONNREFUSED);
  ::close(cfd);
  ::close(lfd);
}

}  // namespace
}  // namespace ringmail::delivery
