//===- ProgressTest.cpp - Progress lines on a terminal, silence elsewhere -===//
#include "runtime/engine/Progress.h"

#include <gtest/gtest.h>

#include <sstream>
#include <thread>

using namespace tilec;

namespace {

TEST(Progress, FormatsBarsAmountsAndRates) {
  EXPECT_EQ(
      formatProgress("weights", 0, 100, 0, ProgressUnit::Items, "weights"),
      "weights: [..............................]   0% 0 / 100 weights");
  EXPECT_EQ(formatProgress("profile", 4, 40, 2.0, ProgressUnit::Items, "steps"),
            "profile: [###...........................]  10% 4 / 40 steps, "
            "2.0 steps/s");
  EXPECT_EQ(formatProgress("weights", int64_t(1) << 30, int64_t(1) << 32, 1.0,
                           ProgressUnit::Bytes),
            "weights: [#######.......................]  25% 1.00 GiB / 4.00 "
            "GiB, 1.00 GiB/s");
  // Done: a full bar; past the total (a late update) is clamped.
  EXPECT_EQ(formatProgress("x", 12, 10, 0.01, ProgressUnit::Items),
            "x: [##############################] 100% 12 / 10");
  // Unknown totals: what runs, then the count when there is one.
  EXPECT_EQ(formatProgress("NVRTC", 0, 0, 12.34, ProgressUnit::Items,
                           "compiling kernel.cu for sm_90a"),
            "NVRTC: compiling kernel.cu for sm_90a ... 12.3 s");
  EXPECT_EQ(
      formatProgress("packing", 7, 0, 1.5, ProgressUnit::Items, "weights"),
      "packing: 7 weights, 1.5 s");
  EXPECT_EQ(formatBytes(640), "640 B");
  EXPECT_EQ(formatBytes(3 << 10), "3.0 KiB");
  EXPECT_EQ(formatBytes(12 << 20), "12.0 MiB");
}

TEST(Progress, QuietWhenNotATerminal) {
  std::ostringstream out;
  {
    Progress bar(out, /*tty=*/false, "weights", 10);
    EXPECT_FALSE(bar.drawing());
    for (int i = 0; i <= 10; ++i)
      bar.update(i, /*force=*/true);
    bar.finish("done");
  }
  {
    Progress unknown(out, false, "NVRTC", 0, ProgressUnit::Items, "compiling");
  }
  EXPECT_EQ(out.str(), "");

  // The default constructor asks isatty(2): with stderr redirected to a file
  // (what CaptureStderr does), nothing reaches it.
  testing::internal::CaptureStderr();
  {
    ASSERT_FALSE(stderrIsTerminal());
    Progress bar("weights", 10, ProgressUnit::Items, "weights");
    EXPECT_FALSE(bar.drawing());
    bar.update(5, true);
    bar.finish(10);
    Progress unknown("NVRTC", 0, ProgressUnit::Items, "compiling");
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(Progress, DrawsInPlaceOnATerminalAndEndsTheLine) {
  std::ostringstream out;
  Progress bar(out, /*tty=*/true, "profile", 4, ProgressUnit::Items, "steps");
  EXPECT_TRUE(bar.drawing());
  EXPECT_EQ(out.str(), ""); // a known total draws on the first update
  bar.update(1);
  std::string first = out.str();
  EXPECT_EQ(first.rfind("\rprofile: [#######", 0), 0u) << first;
  EXPECT_NE(first.find("1 / 4 steps"), std::string::npos) << first;
  EXPECT_EQ(first.find('\n'), std::string::npos);
  // Within 100 ms of the last draw an update is skipped unless forced.
  bar.update(2);
  EXPECT_EQ(out.str(), first);
  bar.update(3, /*force=*/true);
  EXPECT_NE(out.str().find("3 / 4 steps"), std::string::npos);
  bar.finish(4, "(all)");
  std::string all = out.str();
  EXPECT_NE(all.find("4 / 4 steps"), std::string::npos);
  EXPECT_NE(all.find("(all)"), std::string::npos);
  EXPECT_EQ(all.back(), '\n');
  bar.finish(); // only once
  bar.update(1, true);
  EXPECT_EQ(out.str(), all);

  // An unknown total says what runs at once; finish adds the time.
  std::ostringstream nvrtc;
  {
    Progress one(nvrtc, true, "NVRTC", 0, ProgressUnit::Items,
                 "compiling kernel.cu for sm_90a");
    EXPECT_NE(nvrtc.str().find("NVRTC: compiling kernel.cu for sm_90a ... "),
              std::string::npos);
    one.finish("(failed)");
  }
  EXPECT_NE(nvrtc.str().find("(failed)"), std::string::npos);
  EXPECT_EQ(nvrtc.str().back(), '\n');

  // Destroyed unfinished (an exception unwinding): the line still ends.
  std::ostringstream unwound;
  {
    Progress cut(unwound, true, "weights", 10);
    cut.update(3);
  }
  EXPECT_EQ(unwound.str().back(), '\n');
}

} // namespace
