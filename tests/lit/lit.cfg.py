# lit configuration for tilec: FileCheck tests of the dialect, the passes and the tools.
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "tilec"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = config.tilec_lit_obj_root

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%tilec_src", config.tilec_source_dir))

llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.tilec_tools_dir, append_path=True)
llvm_config.use_default_substitutions()
llvm_config.add_tool_substitutions(["tile-opt", "tilec", "tile-run"], [config.tilec_tools_dir])

# "gpu" where a GPU is visible: tests of what tile-run does without one say
# UNSUPPORTED: gpu.
if os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0"):
    config.available_features.add("gpu")
