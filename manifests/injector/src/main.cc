// skiff-inject: the sidecar injector's entry point (see cli.cc).
#include "skiff/inject/cli.h"

int main(int argc, char** argv) {
  return skiff::inject::runCli(std::vector<std::string>(argv + 1, argv + argc));
}
