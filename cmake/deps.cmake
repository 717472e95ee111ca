# System dependencies, all from Debian 12 packages (scripts/install-deps.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(Protobuf REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(yaml-cpp REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(CARES REQUIRED IMPORTED_TARGET libcares)
pkg_check_modules(LUAJIT REQUIRED IMPORTED_TARGET luajit)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)

# Standalone Asio is header-only.
add_library(asio INTERFACE)
# A larger per-thread cache of handler memory: with many connections in flight per worker, Asio's default of 2
# recycled blocks misses and falls back to malloc several times per request.
target_compile_definitions(asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE=16)
# Asio picks aligned_alloc for handler memory only when a libstdc++ header came before it in the file, so two
# files could free each other's handler blocks with the other allocator (ASan: alloc-dealloc-mismatch).
# One choice for every file.
target_compile_definitions(asio INTERFACE ASIO_DISABLE_STD_ALIGNED_ALLOC)
# Asio 1.22 only detects coroutines on clang with libc++; clang 14 with libstdc++'s <coroutine> works too.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  target_compile_definitions(asio INTERFACE ASIO_HAS_CO_AWAIT ASIO_HAS_STD_COROUTINE)
endif()
target_link_libraries(asio INTERFACE Threads::Threads)

# Adds a static library for one area of a component: sources, public include dir, dependencies.
function(skiff_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/sidecar/include
                                            PRIVATE ${PROJECT_SOURCE_DIR}/sidecar/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()
