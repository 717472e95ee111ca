// skiff-inject's command line: inject, webhook, wait.
#pragma once

#include <string>
#include <vector>

namespace skiff::inject {

// Exit status: 0 ok, 1 error (message on stderr, nothing on stdout), 2 bad usage.
int runCli(const std::vector<std::string>& args);

}  // namespace skiff::inject
