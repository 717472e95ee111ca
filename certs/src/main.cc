// skiff-certs entry point: hands the arguments to runCli.
#include <iostream>
#include <string>
#include <vector>

#include "skiff/certs/cli.h"

int main(int argc, char** argv) {
  return skiff::certs::runCli(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
}
