#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace polyrun::store {

// Connects to the PostgreSQL store `uri` names (a libpq connection URI) and creates or checks
// the schema. A URI libpq cannot parse is kParse; a failed connection is kSyscall.
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& uri);

}  // namespace polyrun::store
