package caps

// Mutable caps and share formats (owner: mutable/directory work). This stub
// lets Parse compile until they land.

// parseMutable parses cap kinds other than lit, chk and chk-verify; rest is
// everything after "sphere:<kind>:".
func parseMutable(kind, rest string) (Cap, error) { return nil, errNotImplemented }
