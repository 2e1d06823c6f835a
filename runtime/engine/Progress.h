//===- Progress.h - Progress of long work on a terminal ---------*- C++ -*-===//
//
// Weight packing and upload, synthesis on the GPU, NVRTC compiles and runs of
// many steps take seconds to minutes at full size. A Progress draws one line
// on stderr, redrawn in place (at most every 100 ms), and only when stderr is
// a terminal: redirected to a file or a pipe (CI, lit, scripts) it prints
// nothing, so logs stay clean. LLVM-free.
//
//   Progress bar("weights", totalBytes, ProgressUnit::Bytes);
//   for (...) bar.update(done);
//   bar.finish();
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace tilec {

/// "1.50 GiB", "12.0 MiB", "3.0 KiB", "640 B".
std::string formatBytes(int64_t bytes);

enum class ProgressUnit {
  Items, // "12 / 40 <what>", rate in <what>/s
  Bytes, // "1.20 GiB / 4.40 GiB", rate in bytes/s
};

/// One progress line (no carriage return, no newline):
///   total > 0:  "weights: [#########.....................]  30% 1.20 GiB /
///                4.00 GiB, 2.40 GiB/s"
///               "profile: [###...] 10% 4 / 40 steps, 12.5 steps/s"
///   total <= 0 (unknown, e.g. one NVRTC call): "NVRTC: kernel.cu ... 3.2 s"
///               (with `what` after the label) or "label: 12 what, 3.2 s"
///               when done > 0.
/// The bar is 30 characters; the percentage is clamped to [0, 100]; no rate
/// is shown before 0.05 s have passed.
std::string formatProgress(const std::string &label, int64_t done,
                           int64_t total, double seconds, ProgressUnit unit,
                           const std::string &what = "");

/// Whether stderr is a terminal (isatty(STDERR_FILENO)).
bool stderrIsTerminal();

class Progress {
public:
  /// Draws on std::cerr when `enabled` and stderr is a terminal.
  Progress(std::string label, int64_t total,
           ProgressUnit unit = ProgressUnit::Items, std::string what = "",
           bool enabled = true);
  /// Draws on `out` when `tty` (what the first constructor decides from
  /// isatty); for tests and callers that know better.
  Progress(std::ostream &out, bool tty, std::string label, int64_t total,
           ProgressUnit unit = ProgressUnit::Items, std::string what = "");
  /// Ends the line if finish() was not called (an exception unwinding).
  ~Progress();
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;

  /// Redraws with `done` of the total, at most every 100 ms unless `force`.
  void update(int64_t done, bool force = false);
  /// Draws the final state (`done`, or the last update's) and ends the line;
  /// `note` is appended (e.g. "(failed)"). Later calls do nothing.
  void finish(const std::string &note = "");
  void finish(int64_t done, const std::string &note = "");
  /// Whether anything is drawn.
  bool drawing() const { return tty_; }

private:
  void draw(const std::string &note);

  std::ostream &out_;
  bool tty_, finished_ = false, drawn_ = false;
  std::string label_, what_;
  int64_t total_, done_ = 0;
  ProgressUnit unit_;
  std::chrono::steady_clock::time_point start_, last_;
};

} // namespace tilec
