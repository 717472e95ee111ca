// --run-validation: proves the installed rules redirect a real connection, as istio-iptables does.
#pragma once

#include <string>

#include "skiff/init/options.h"

namespace skiff::init {

// Listens on 127.0.0.1:<-p> and 127.0.0.1:<-z>, then (as the first proxy uid/gid, like Istio's
// istio-validation container) dials 127.0.0.6:<probe port> until a listener accepts a connection whose
// SO_ORIGINAL_DST port is the probe port, or the probe timeout passes. Returns "" on success, else why not.
std::string validateRedirect(const Options& o);

}  // namespace skiff::init
