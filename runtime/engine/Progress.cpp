//===- Progress.cpp - Progress of long work on a terminal -----------------===//
#include "runtime/engine/Progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <unistd.h>

namespace tilec {

std::string formatBytes(int64_t bytes) {
  double b = double(bytes);
  if (bytes >= (int64_t(1) << 30))
    return fmt::format("{:.2f} GiB", b / double(int64_t(1) << 30));
  if (bytes >= (int64_t(1) << 20))
    return fmt::format("{:.1f} MiB", b / double(1 << 20));
  if (bytes >= (int64_t(1) << 10))
    return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{} B", bytes);
}

std::string formatProgress(const std::string &label, int64_t done,
                           int64_t total, double seconds, ProgressUnit unit,
                           const std::string &what) {
  const bool bytes = unit == ProgressUnit::Bytes;
  auto amount = [&](int64_t n) {
    return bytes ? formatBytes(n) : std::to_string(n);
  };
  const std::string suffix = what.empty() || bytes ? "" : " " + what;
  if (total <= 0) {
    if (done <= 0)
      return fmt::format("{}: {}{}... {:.1f} s", label, what,
                         what.empty() ? "" : " ", seconds);
    return fmt::format("{}: {}{}, {:.1f} s", label, amount(done), suffix,
                       seconds);
  }
  double fraction =
      std::clamp(double(std::max<int64_t>(done, 0)) / double(total), 0.0, 1.0);
  int filled = int(fraction * 30);
  std::string line = fmt::format(
      "{}: [{}{}] {:3.0f}% {} / {}{}", label, std::string(size_t(filled), '#'),
      std::string(size_t(30 - filled), '.'), fraction * 100, amount(done),
      amount(total), suffix);
  if (seconds >= 0.05 && done > 0) {
    double rate = double(done) / seconds;
    line += bytes ? fmt::format(", {}/s", formatBytes(int64_t(rate)))
                  : fmt::format(", {:.1f} {}/s", rate,
                                what.empty() ? "items" : what);
  }
  return line;
}

bool stderrIsTerminal() { return ::isatty(STDERR_FILENO) != 0; }

Progress::Progress(std::string label, int64_t total, ProgressUnit unit,
                   std::string what, bool enabled)
    : Progress(std::cerr, enabled && stderrIsTerminal(), std::move(label),
               total, unit, std::move(what)) {}

Progress::Progress(std::ostream &out, bool tty, std::string label,
                   int64_t total, ProgressUnit unit, std::string what)
    : out_(out), tty_(tty), label_(std::move(label)), what_(std::move(what)),
      total_(total), unit_(unit), start_(std::chrono::steady_clock::now()) {
  if (tty_ && total_ <= 0)
    draw(""); // unknown total: say what is going on right away
}

Progress::~Progress() {
  if (tty_ && drawn_ && !finished_)
    out_ << "\n" << std::flush;
}

void Progress::draw(const std::string &note) {
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  // Erase the rest of a longer previous line (ESC [ K).
  out_ << "\r" << formatProgress(label_, done_, total_, seconds, unit_, what_)
       << (note.empty() ? "" : " " + note) << "\x1b[K" << std::flush;
  drawn_ = true;
}

void Progress::update(int64_t done, bool force) {
  done_ = done;
  if (!tty_ || finished_)
    return;
  auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100))
    return;
  last_ = now;
  draw("");
}

void Progress::finish(const std::string &note) { finish(done_, note); }

void Progress::finish(int64_t done, const std::string &note) {
  done_ = done;
  if (finished_)
    return;
  finished_ = true;
  if (!tty_)
    return;
  draw(note);
  out_ << "\n" << std::flush;
}

} // namespace tilec
