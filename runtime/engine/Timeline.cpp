//===- Timeline.cpp - A step's trace as a PNG timeline --------------------===//
#include "runtime/engine/Timeline.h"

#include "models/core/Error.h"
#include "runtime/engine/Profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

namespace tilec {

namespace {

/// A 5x7 font drawn for this file: rows top to bottom, '#' = ink. Lower case
/// sits on row 5 with descenders on row 6.
struct Glyph {
  char c;
  const char *rows[7];
};

// clang-format off
const Glyph kFont[] = {
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'a', {".....", ".....", ".###.", "#...#", "#..##", ".##.#", "....."}},
    {'b', {"#....", "#....", "####.", "#...#", "#...#", "####.", "....."}},
    {'c', {".....", ".....", ".####", "#....", "#....", ".####", "....."}},
    {'d', {"....#", "....#", ".####", "#...#", "#...#", ".####", "....."}},
    {'e', {".....", ".....", ".###.", "#####", "#....", ".####", "....."}},
    {'f', {"..##.", ".#...", "####.", ".#...", ".#...", ".#...", "....."}},
    {'g', {".....", ".....", ".####", "#...#", ".####", "....#", ".###."}},
    {'h', {"#....", "#....", "####.", "#...#", "#...#", "#...#", "....."}},
    {'i', {"..#..", ".....", ".##..", "..#..", "..#..", ".###.", "....."}},
    {'j', {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", ".##.."}},
    {'k', {"#....", "#....", "#..#.", "###..", "#.#..", "#..#.", "....."}},
    {'l', {".##..", "..#..", "..#..", "..#..", "..#..", ".###.", "....."}},
    {'m', {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "....."}},
    {'n', {".....", ".....", "####.", "#...#", "#...#", "#...#", "....."}},
    {'o', {".....", ".....", ".###.", "#...#", "#...#", ".###.", "....."}},
    {'p', {".....", ".....", "####.", "#...#", "####.", "#....", "#...."}},
    {'q', {".....", ".....", ".####", "#...#", ".####", "....#", "....#"}},
    {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "....."}},
    {'s', {".....", ".....", ".####", "##...", "...##", "####.", "....."}},
    {'t', {".#...", ".#...", "####.", ".#...", ".#..#", "..##.", "....."}},
    {'u', {".....", ".....", "#...#", "#...#", "#..##", ".##.#", "....."}},
    {'v', {".....", ".....", "#...#", "#...#", ".#.#.", "..#..", "....."}},
    {'w', {".....", ".....", "#...#", "#.#.#", "#.#.#", ".#.#.", "....."}},
    {'x', {".....", ".....", "#...#", ".#.#.", ".#.#.", "#...#", "....."}},
    {'y', {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."}},
    {'z', {".....", ".....", "#####", "...#.", ".#...", "#####", "....."}},
    {'.', {".....", ".....", ".....", ".....", ".....", "..#..", "....."}},
    {',', {".....", ".....", ".....", ".....", ".....", "..#..", ".#..."}},
    {':', {".....", ".....", "..#..", ".....", ".....", "..#..", "....."}},
    {';', {".....", ".....", "..#..", ".....", ".....", "..#..", ".#..."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'-', {".....", ".....", ".....", ".###.", ".....", ".....", "....."}},
    {'+', {".....", ".....", "..#..", "#####", "..#..", ".....", "....."}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'/', {"....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'%', {"##..#", "##.#.", "...#.", "..#..", ".#...", ".#.##", "#..##"}},
    {'?', {".###.", "#...#", "...#.", "..#..", "..#..", ".....", "..#.."}},
};
// clang-format on

const Glyph &glyphFor(char c) {
  c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const Glyph &g : kFont)
    if (g.c == c)
      return g;
  for (const Glyph &g : kFont)
    if (g.c == '?')
      return g;
  return kFont[0];
}

uint32_t darker(uint32_t rgb) {
  uint32_t r = (rgb >> 16) & 0xff, g = (rgb >> 8) & 0xff, b = rgb & 0xff;
  return (r * 6 / 10) << 16 | (g * 6 / 10) << 8 | (b * 6 / 10);
}

/// A step of 1, 2 or 5 times a power of ten, about `span / ticks`.
double niceStep(double span, int ticks) {
  double raw = span / std::max(ticks, 1);
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double f : {1.0, 2.0, 5.0, 10.0})
    if (f * p >= raw)
      return f * p;
  return 10 * p;
}

} // namespace

uint32_t familyColor(TilecTaskFamily family) {
  static const uint32_t colors[] = {
      0x8c564b, // embed
      0x1f77b4, // linear
      0xff7f0e, // attention
      0x9467bd, // router_topk
      0x2ca02c, // moe_gate_up
      0x17becf, // moe_down
      0xbcbd22, // moe_combine
      0xd62728, // argmax_reduce
      0xe377c2, // concat
      0x7f7f7f, // spec_accept
      0x393b79, // spec_update
      0xad494a, // draft_fill
      0x98df8a, // silu_mul
  };
  static_assert(sizeof(colors) / sizeof(colors[0]) == TILEC_TASK_FAMILY_COUNT,
                "a colour for every task family");
  return unsigned(family) < TILEC_TASK_FAMILY_COUNT ? colors[family] : 0;
}

int drawText(RgbImage &image, int x, int y, const std::string &text,
             uint32_t rgb) {
  for (char c : text) {
    const Glyph &g = glyphFor(c);
    for (int r = 0; r < 7; ++r)
      for (int k = 0; k < 5; ++k)
        if (g.rows[r][k] == '#')
          image.set(x + k, y + r, rgb);
    x += 6;
  }
  return x;
}

RgbImage renderTimeline(const EngineManifest &m,
                        const std::vector<uint64_t> &trace,
                        const TimelineOptions &options,
                        TimelineLayout *layoutOut) {
  std::vector<TaskSpan> spans;
  forEachTaskSpan(m, trace, [&](const TaskSpan &s) { spans.push_back(s); });
  if (spans.empty())
    fail("timeline: the trace has no task with time stamps");
  TimelineLayout L;
  L.t0 = UINT64_MAX;
  for (const TaskSpan &s : spans) {
    L.t0 = std::min(L.t0, s.begin);
    L.t1 = std::max(L.t1, s.end);
  }
  const int sms = int(m.smTasks.size());
  const int width = std::max(options.width, 400);
  const int labelChars = int(fmt::format("sm {}", sms - 1).size());
  L.plotX = 8 + 6 * labelChars + 6;
  L.plotWidth = width - L.plotX - 16;
  L.rowHeight = std::clamp(600 / std::max(sms, 1), 3, 14);
  L.rowsY = 40;
  const int rowsEnd = L.rowsY + sms * L.rowHeight;
  const int axisY = rowsEnd + 2;
  L.legendY = axisY + 24;

  // The legend: the families present, in enum order, then idle, as many per
  // line as fit.
  std::set<int> present;
  for (const TaskSpan &s : spans)
    present.insert(int(s.task->w[TILEC_W_FAMILY]));
  struct Entry {
    std::string label;
    uint32_t color;
    int x = 0, y = 0;
  };
  std::vector<Entry> legend;
  for (int f : present)
    legend.push_back(
        {familyName(TilecTaskFamily(f)), familyColor(TilecTaskFamily(f))});
  legend.push_back({"idle", kTimelineIdle});
  const bool waits = std::any_of(spans.begin(), spans.end(),
                                 [](const TaskSpan &s) { return s.waited(); });
  if (waits)
    legend.push_back({"sched wait (band)", kTimelineWait});
  int lx = L.plotX, ly = L.legendY;
  for (Entry &e : legend) {
    int w = 14 + 6 * int(e.label.size()) + 18;
    if (lx + w > width - 8 && lx > L.plotX) {
      lx = L.plotX;
      ly += 14;
    }
    e.x = lx, e.y = ly;
    lx += w;
  }
  const int height = ly + 14 + 8;
  RgbImage image(width, height, 0xffffff);

  drawText(image, 8, 8, options.title, 0x000000);
  drawText(image, 8, 20, options.subtitle, 0x404040);

  // Rows: idle background, then the tasks.
  const double span = double(std::max<uint64_t>(L.t1 - L.t0, 1));
  const double scale = double(L.plotWidth) / span;
  const int gap = L.rowHeight >= 4 ? 1 : 0;
  const int labelEvery = (10 + L.rowHeight - 1) / L.rowHeight;
  for (int sm = 0; sm < sms; ++sm) {
    int y = L.rowsY + sm * L.rowHeight;
    image.fill(L.plotX, y, L.plotX + L.plotWidth, y + L.rowHeight - gap,
               kTimelineIdle);
    if (sm % labelEvery == 0)
      drawText(image, 8, y + (L.rowHeight - gap - 7) / 2,
               fmt::format("sm {}", sm), 0x000000);
  }
  for (const TaskSpan &s : spans) {
    int x0 = L.plotX + int(std::floor(double(s.begin - L.t0) * scale));
    int x1 = L.plotX + int(std::ceil(double(s.end - L.t0) * scale));
    x1 = std::max(x1, x0 + 1);
    int y = L.rowsY + s.sm * L.rowHeight;
    uint32_t color = familyColor(TilecTaskFamily(s.task->w[TILEC_W_FAMILY]));
    image.fill(x0, y, x1, y + L.rowHeight - gap, color);
    if (x1 - x0 >= 3) // a darker first column separates adjacent tasks
      image.fill(x0, y, x0 + 1, y + L.rowHeight - gap, darker(color));
  }
  // The sched role's waits on events: a thin band at the bottom of the row,
  // over the tasks (a wait overlaps the previous task on the GPU).
  const int band = std::max(1, (L.rowHeight - gap) / 4);
  for (const TaskSpan &s : spans) {
    if (!s.waited())
      continue;
    uint64_t b = std::clamp(s.waitBegin, L.t0, L.t1),
             e = std::clamp(s.waitEnd, L.t0, L.t1);
    if (e <= b)
      continue;
    int x0 = L.plotX + int(std::floor(double(b - L.t0) * scale));
    int x1 =
        std::max(x0 + 1, L.plotX + int(std::ceil(double(e - L.t0) * scale)));
    int y1 = L.rowsY + s.sm * L.rowHeight + L.rowHeight - gap;
    image.fill(x0, y1 - band, x1, y1, kTimelineWait);
  }

  // The time axis, in us from the first stamp.
  image.fill(L.plotX, axisY, L.plotX + L.plotWidth, axisY + 1, 0x000000);
  const double us = span / 1e3;
  const double tick = niceStep(us, 8);
  for (double t = 0; t <= us + 1e-9; t += tick) {
    int x = L.plotX + int(std::lround(t * 1e3 * scale));
    image.fill(x, axisY, x + 1, axisY + 4, 0x000000);
    std::string label = tick >= 1     ? fmt::format("{:.0f}", t)
                        : tick >= 0.1 ? fmt::format("{:.1f}", t)
                                      : fmt::format("{:.2f}", t);
    drawText(image, x - 3 * int(label.size()), axisY + 6, label, 0x000000);
  }
  drawText(image, L.plotX + L.plotWidth - 6 * 2, axisY + 14, "us", 0x000000);

  for (const Entry &e : legend) {
    image.fill(e.x, e.y, e.x + 10, e.y + 8, e.color);
    drawText(image, e.x + 14, e.y, e.label, 0x000000);
  }
  if (layoutOut)
    *layoutOut = L;
  return image;
}

} // namespace tilec
