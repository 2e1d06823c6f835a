//===- Machine.cpp - Machine targets the cost model and tiling use --------===//
#include "passes/Machine.h"

#include "mlir/IR/Builders.h"

namespace mlir::tile {

std::optional<Machine> namedMachine(StringRef name) {
  // DESIGN.md's table: H100/H200 copy bandwidth measured on this workplace's
  // machines; B200 from its datasheet until measured.
  if (name == "h100")
    return Machine{"h100", "sm_90a", 132, 232448, 65536, 50l << 20, 3000, 790};
  if (name == "h200")
    return Machine{"h200", "sm_90a", 132, 232448, 65536, 60l << 20, 4300, 790};
  if (name == "b200")
    return Machine{"b200", "sm_100a",  148,  232448,
                   65536,  126l << 20, 8000, 2200};
  return std::nullopt;
}

DictionaryAttr Machine::toAttr(MLIRContext *context) const {
  Builder b(context);
  return b.getDictionaryAttr({
      b.getNamedAttr("name", b.getStringAttr(name)),
      b.getNamedAttr("arch", b.getStringAttr(arch)),
      b.getNamedAttr("sms", b.getI64IntegerAttr(sms)),
      b.getNamedAttr("smem", b.getI64IntegerAttr(smemPerBlock)),
      b.getNamedAttr("regs", b.getI64IntegerAttr(regsPerSm)),
      b.getNamedAttr("l2_bytes", b.getI64IntegerAttr(l2Bytes)),
      b.getNamedAttr("hbm_gbps", b.getF64FloatAttr(hbmGBps)),
      b.getNamedAttr("tflops", b.getF64FloatAttr(tflops)),
  });
}

Machine Machine::fromProgram(ProgramOp program) {
  DictionaryAttr d = program.getTarget();
  Machine m;
  if (auto s = dyn_cast_or_null<StringAttr>(d.get("name")))
    m.name = s.str();
  if (auto s = dyn_cast_or_null<StringAttr>(d.get("arch")))
    m.arch = s.str();
  m.sms = program.getTargetInt("sms", 0);
  m.smemPerBlock = program.getTargetInt("smem", 0);
  m.regsPerSm = program.getTargetInt("regs", 65536);
  m.l2Bytes = program.getTargetInt("l2_bytes", 0);
  if (auto f = dyn_cast_or_null<FloatAttr>(d.get("hbm_gbps")))
    m.hbmGBps = f.getValueAsDouble();
  if (auto f = dyn_cast_or_null<FloatAttr>(d.get("tflops")))
    m.tflops = f.getValueAsDouble();
  return m;
}

} // namespace mlir::tile
