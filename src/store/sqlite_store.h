#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace polyrun::store {

// Opens (creating with mode 0600 when missing) the SQLite store at `path`. The parent
// directory must exist: a missing one is an error naming it, not something we create.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace polyrun::store
