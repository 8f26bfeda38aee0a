// mta/smtp/received.h: the Received: trace header, RFC 5322 dates, Message-ID lookup.
#include "mta/smtp/received.h"

#include <gtest/gtest.h>

#include <string>

namespace ringmail::smtp {
namespace {

TEST(Rfc5322Date, KnownInstants) {
  EXPECT_EQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(1700000000), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(rfc5322_date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(1798342596), "Sun, 27 Dec 2026 03:36:36 +0000");
  EXPECT_EQ(rfc5322_date(1704067199), "Sun, 31 Dec 2023 23:59:59 +0000");
  EXPECT_EQ(rfc5322_date(4102444800), "Fri, 01 Jan 2100 00:00:00 +0000");
}

TEST(Rfc5322Date, EveryDayAndMonthNameIsEnglish) {
  const char* days[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(rfc5322_date(int64_t{86400} * i).substr(0, 5), std::string(days[i]) + ", ") << i;
  const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // The 15th of each month of 2021 (no DST or leap-year surprises in UTC).
  const int64_t fifteenth[] = {1610668800, 1613347200, 1615766400, 1618444800,
                               1621036800, 1623715200, 1626307200, 1628985600,
                               1631664000, 1634256000, 1636934400, 1639526400};
  for (int m = 0; m < 12; ++m) {
    std::string d = rfc5322_date(fifteenth[m]);
    EXPECT_EQ(d.substr(5, 12), "15 " + std::string(months[m]) + " 2021 ") << d;
    EXPECT_EQ(d.size(), 31u) << d;
  }
}

TEST(ReceivedHeader, FormatWithRecipient) {
  TraceInfo t;
  t.helo = "client.example";
  t.client_ip = "192.0.2.1";
  t.hostname = "mx.example.test";
  t.protocol = "ESMTPS";
  t.queue_id = "0123456789ABC";
  t.recipient = "bob@example.test";
  t.unix_time = 1700000000;
  EXPECT_EQ(received_header(t),
            "Received: from client.example ([192.0.2.1])\r\n"
            "\tby mx.example.test (ringmail) with ESMTPS id 0123456789ABC\r\n"
            "\tfor <bob@example.test>; Tue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST(ReceivedHeader, FormatWithoutRecipient) {
  TraceInfo t;
  t.helo = "[192.0.2.9]";
  t.client_ip = "IPv6:2001:db8::1";
  t.hostname = "mx.example.test";
  t.protocol = "ESMTP";
  t.queue_id = "QID";
  t.unix_time = 0;
  std::string h = received_header(t);
  EXPECT_EQ(h,
            "Received: from [192.0.2.9] ([IPv6:2001:db8::1])\r\n"
            "\tby mx.example.test (ringmail) with ESMTP id QID; "
            "Thu, 01 Jan 1970 00:00:00 +0000\r\n");
}

TEST(ReceivedHeader, IsAWellFormedFoldedHeader) {
  TraceInfo t;
  t.helo = "h";
  t.client_ip = "198.51.100.2";
  t.hostname = "mx";
  t.protocol = "SMTP";
  t.queue_id = "ID";
  t.recipient = "r@x.example";
  t.unix_time = 1234567890;
  std::string h = received_header(t);
  ASSERT_GE(h.size(), 2u);
  EXPECT_EQ(h.substr(h.size() - 2), "\r\n");
  EXPECT_EQ(h.rfind("Received: ", 0), 0u);
  // Every line break is CRLF followed by whitespace (a fold), except the last one.
  size_t pos = 0, breaks = 0;
  while ((pos = h.find("\r\n", pos)) != std::string::npos) {
    ++breaks;
    if (pos + 2 < h.size()) {
      EXPECT_TRUE(h[pos + 2] == '\t' || h[pos + 2] == ' ');
    }
    pos += 2;
  }
  EXPECT_EQ(breaks, 3u);
  EXPECT_EQ(h.find('\n'), h.find("\r\n") + 1);
  // The date follows the last "; ".
  EXPECT_NE(h.find("; Fri, 13 Feb 2009 23:31:30 +0000\r\n"), std::string::npos);
  // It is found as a header by find_message_id's scanner too: no blank line inside.
  EXPECT_EQ(h.find("\r\n\r\n"), std::string::npos);
}

TEST(FindMessageId, Simple) {
  EXPECT_EQ(
      find_message_id("From: a@b\r\nMessage-ID: <abc@host.example>\r\nSubject: x\r\n\r\nbody\r\n"),
      "<abc@host.example>");
}

TEST(FindMessageId, NameIsCaseInsensitive) {
  EXPECT_EQ(find_message_id("message-id: <x@y>\r\n\r\n"), "<x@y>");
  EXPECT_EQ(find_message_id("MESSAGE-ID:<x@y>\r\n\r\n"), "<x@y>");
  EXPECT_EQ(find_message_id("Message-Id:   <x@y>  \r\n\r\n"), "<x@y>");
  EXPECT_EQ(find_message_id("Message-Id:\t<x@y>\t\r\n\r\n"), "<x@y>");
}

TEST(FindMessageId, FoldedHeader) {
  EXPECT_EQ(find_message_id("Subject: x\r\nMessage-ID:\r\n <folded@host.example>\r\nTo: y\r\n\r\n"),
            "<folded@host.example>");
  EXPECT_EQ(find_message_id("Message-ID: <part1\r\n\tpart2@host>\r\n\r\n"), "<part1\tpart2@host>");
  // Folded and last in the message, no CRLF at the end.
  EXPECT_EQ(find_message_id("Message-ID:\r\n <end@host>"), "<end@host>");
}

TEST(FindMessageId, Absent) {
  EXPECT_EQ(find_message_id(""), "");
  EXPECT_EQ(find_message_id("\r\n"), "");
  EXPECT_EQ(find_message_id("From: a@b\r\nSubject: no id\r\n\r\nbody\r\n"), "");
  // Lookalike header names.
  EXPECT_EQ(find_message_id("X-Message-ID: <no@x>\r\nMessage-IDs: <no@y>\r\n\r\n"), "");
  EXPECT_EQ(find_message_id("Resent-Message-ID: <no@x>\r\n\r\n"), "");
  EXPECT_EQ(find_message_id("In-Reply-To: <no@x>\r\nReferences: <no@y>\r\n\r\n"), "");
  // Empty value.
  EXPECT_EQ(find_message_id("Message-ID:\r\n\r\n"), "");
  EXPECT_EQ(find_message_id("Message-ID:   \r\n\r\n"), "");
}

TEST(FindMessageId, OnlyTheHeaderSectionIsRead) {
  EXPECT_EQ(find_message_id("Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n"), "");
  // A message that starts with the blank line has no headers at all.
  EXPECT_EQ(find_message_id("\r\nMessage-ID: <in-body@x>\r\n"), "");
}

TEST(FindMessageId, AfterAReceivedHeader) {
  TraceInfo t;
  t.helo = "c.example";
  t.client_ip = "192.0.2.1";
  t.hostname = "mx.example";
  t.protocol = "ESMTP";
  t.queue_id = "Q";
  t.recipient = "r@example";
  t.unix_time = 1;
  std::string m = received_header(t) + "Message-ID: <after@received>\r\n\r\nhi\r\n";
  EXPECT_EQ(find_message_id(m), "<after@received>");
}

TEST(FindMessageId, FirstOneWins) {
  EXPECT_EQ(find_message_id("Message-ID: <one@x>\r\nMessage-ID: <two@x>\r\n\r\n"), "<one@x>");
}

TEST(FindMessageId, MaxScan) {
  std::string filler;
  for (int i = 0; i < 100; ++i) filler += "X-Filler: " + std::string(50, 'f') + "\r\n";
  std::string m = filler + "Message-ID: <late@x>\r\n\r\n";
  EXPECT_EQ(find_message_id(m), "<late@x>");
  EXPECT_EQ(find_message_id(m, filler.size()), "");
  EXPECT_EQ(find_message_id(m, m.size()), "<late@x>");
}

}  // namespace
}  // namespace ringmail::smtp
