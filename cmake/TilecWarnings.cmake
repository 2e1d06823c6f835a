# Warning flags shared by every target of the project: the build is warning-free at -Wall.
function(tilec_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12 reports a false -Wstringop-overflow inside fmt 9's fill_t when fmt::join
    # is inlined at -O3 (Debian 12's fmt + gcc pair).
    target_compile_options(${target} PRIVATE -Wno-stringop-overflow)
  endif()
endfunction()

# An LLVM-free library target (runtime side): exceptions and RTTI on.
function(tilec_add_runtime_library name)
  add_library(${name} STATIC ${ARGN})
  tilec_set_warnings(${name})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
