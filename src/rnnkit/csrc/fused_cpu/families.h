// The kernel families: rnnkit cells name theirs by CellSpec.kernel_family(), and with_family finds
// it here (the family's options, such as IndRNN's nonlinearity, may pick a variant). A family is one
// header under families/ that defines a visit_<name> function; adding one is one line below.
#pragma once

#include <string>
#include <vector>

#include "families/elman.h"
#include "families/gru.h"
#include "families/indrnn.h"
#include "lstm_loop.h"
#include "params.h"

namespace rnnkit {

// visit(Family{}) for the family `name` with these options; false if there is none of that name.
template <typename Visit>
bool with_family(const std::string& name, const Options& options, Visit&& visit) {
  return visit_elman(name, options, visit) || visit_gru(name, options, visit) ||
         visit_lstm(name, options, visit) || visit_indrnn(name, options, visit);
}

inline const std::vector<std::string>& family_names() {
  static const std::vector<std::string> names = {"elman_tanh", "elman_relu", "elman_modrelu",
                                                 "gru", "lstm", "indrnn"};
  return names;
}

}  // namespace rnnkit
