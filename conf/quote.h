// Internal to conf/: how error messages quote what the user wrote.
#pragma once

#include <string>
#include <string_view>

namespace ringmail::conf {

// Control bytes escaped so every problem stays on one line; long input cut at 80 bytes so
// one typo cannot flood a log.
std::string quoted(std::string_view s);

}  // namespace ringmail::conf
