//===- Error.cpp - Errors of the LLVM-free half of tilec ------------------===//
#include "models/core/Error.h"
