// Start-up checks of the S2 flags (src/s2/config_check.h): S2's basin name
// rules (../shared/s2-api.md §1.2) and endpoint URLs.

#include "s2/config_check.h"

#include <gtest/gtest.h>

#include <string>

namespace ds::s2 {
namespace {

TEST(S2BasinName, AcceptsWhatS2Accepts) {
  for (const char* name : {"abcdefgh", "test-basin-1", "s2cluster-basin", "12345678", "a-------b",
                           "my-basin-1", "0a1b2c3d4e5f"}) {
    EXPECT_EQ(basin_name_error(name), std::nullopt) << name;
  }
  EXPECT_EQ(basin_name_error(std::string(48, 'a')), std::nullopt);  // the longest allowed
  EXPECT_EQ(basin_name_error(std::string(8, '7')), std::nullopt);   // the shortest allowed
}

TEST(S2BasinName, RefusesTooShortAndTooLong) {
  auto e = basin_name_error("b1");  // the name from issue 10 item 7
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("'b1'"), std::string::npos) << *e;
  EXPECT_NE(e->find("too short"), std::string::npos) << *e;
  EXPECT_NE(e->find("8 to 48"), std::string::npos) << *e;  // says what to do
  EXPECT_TRUE(basin_name_error("abcdefg"));                // 7
  e = basin_name_error(std::string(49, 'a'));
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("too long"), std::string::npos) << *e;
  e = basin_name_error("");
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("empty"), std::string::npos) << *e;
}

TEST(S2BasinName, RefusesCharactersOutsideLowercaseDigitsAndHyphen) {
  auto e = basin_name_error("Test-basin-1");
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("uppercase"), std::string::npos) << *e;
  for (const char* name : {"test_basin_1", "test.basin.1", "test basin1", "test/basin1",
                           "tëst-basin-1", "test-basin:1"}) {
    EXPECT_TRUE(basin_name_error(name)) << name;
  }
  e = basin_name_error(std::string("test\nbasin1"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->find('\n'), std::string::npos) << "the message stays on one line";
}

TEST(S2BasinName, RefusesALeadingOrTrailingHyphen) {
  for (const char* name : {"-testbasin", "testbasin-", "--------", "-abcdefg-"}) {
    auto e = basin_name_error(name);
    ASSERT_TRUE(e) << name;
    EXPECT_NE(e->find("hyphen"), std::string::npos) << *e;
  }
}

TEST(S2Endpoint, AcceptsTheCloudAndSingleHostForms) {
  for (const char* url : {"https://{basin}.b.s2.dev", "https://my-basin-1.b.s2.dev/v1",
                          "http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8080",
                          "https://s2.internal:65535/prefix/v1/", "http://[::1]"}) {
    EXPECT_EQ(endpoint_error(url), std::nullopt) << url;
  }
}

TEST(S2Endpoint, RefusesWhatTheClientCannotUse) {
  for (const char* url :
       {"", "127.0.0.1:8080", "ftp://host", "https://", "http://:8080",
        "http://host:", "http://host:port", "http://host:0", "http://host:65536",
        "http://host:123456", "http://user:pw@host", "http://host/v1?x=1", "http://host#frag",
        "http://[::1", "http://[]:80", "http://[::1]x", " http://host", "http://ho st"}) {
    auto e = endpoint_error(url);
    EXPECT_TRUE(e) << url;
    if (e) {
      EXPECT_EQ(e->find('\n'), std::string::npos) << *e;
    }
  }
  auto e = endpoint_error("s2.dev");
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("http:// or https://"), std::string::npos) << *e;
}

}  // namespace
}  // namespace ds::s2
