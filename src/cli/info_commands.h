#pragma once

#include "cli/settings.h"

namespace polyrun::cli {

// `polyrun languages [--json]`: every language folder, its version, and whether it is usable
// on this host (and why not). Exit 0 when at least one language is usable.
int LanguagesCommand(const SettingsFlags& settings, bool json);

// `polyrun doctor [--json]`: each sandbox mechanism, probed for real, with how to fix what is
// missing; ends with a real sandboxed run. Exit 0 when everything needed works.
int DoctorCommand(const SettingsFlags& settings, bool json);

// `polyrun options [--markdown]`: every option from its one declaration.
int OptionsCommand();

}  // namespace polyrun::cli
