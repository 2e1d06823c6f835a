//===- Timeline.h - A step's trace as a PNG timeline ------------*- C++ -*-===//
//
// tile-run profile's timeline.png: one row per SM, each task a box from its
// start to its end stamp, coloured by task family (a legend below names the
// colours), idle time the grey of the row's background, the sched role's
// waits on events as a thin dark band along the row's bottom (when the trace
// has them), a time axis in us.
// Text is drawn with a small built-in 5x7 font (lower case, digits and a few
// signs; upper case is drawn as lower case). LLVM-free.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/engine/Manifest.h"
#include "runtime/engine/Png.h"

#include <cstdint>
#include <string>
#include <vector>

namespace tilec {

struct TimelineOptions {
  int width = 1400;
  std::string title, subtitle; // drawn above the rows
};

/// The colour (0xRRGGBB) of a task family in timelines; black outside the
/// enum.
uint32_t familyColor(TilecTaskFamily family);
/// The background of a row: what idle time looks like.
constexpr uint32_t kTimelineIdle = 0xe4e4e4;
/// The band of the sched role's waits on events.
constexpr uint32_t kTimelineWait = 0x202020;

/// Draws `text` with its top-left corner at (x, y), 6 pixels per character,
/// 7 high. Returns the x after the last character.
int drawText(RgbImage &image, int x, int y, const std::string &text,
             uint32_t rgb);

/// Where the timeline puts things (for tests and callers that annotate it).
struct TimelineLayout {
  int plotX = 0, plotWidth = 0; // the time axis: [plotX, plotX + plotWidth)
  int rowsY = 0, rowHeight = 0; // SM s's row starts at rowsY + s * rowHeight
  int legendY = 0;
  uint64_t t0 = 0, t1 = 0; // the clock span drawn
};

/// The timeline of one step's trace of `m` (forEachTaskSpan's layout).
/// Throws tilec::Error when no task of the trace has stamps.
RgbImage renderTimeline(const EngineManifest &m,
                        const std::vector<uint64_t> &trace,
                        const TimelineOptions &options = {},
                        TimelineLayout *layout = nullptr);

} // namespace tilec
