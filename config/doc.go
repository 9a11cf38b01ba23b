// Package config owns amqplb's configuration: the types, loading them from
// TOML and writing them back as TOML, their defaults, and their validation.
// Every error names the file and, where it can be found, the line, so that a
// user can fix the file from the message alone.
//
// The haproxy.cfg importer is package config/haproxycfg, which builds a
// Config with this package's exported types and validates it with Validate;
// this package must not import it.
//
// config is imported only by cmd (and config/haproxycfg). Other packages
// take plain option structs that cmd builds from a Config; they must not
// import this package, and this package must not import them.
package config

// Why the decoder is BurntSushi/toml's generic map, our reflection over the
// toml tags (load.go) and a line scanner (lines.go), not
// github.com/pelletier/go-toml/v2 (v2.4.3, evaluated with
// DisallowUnknownFields against these types):
//
//   - Its positions are right, also inside arrays of tables: a type error in
//     the second [[backend.server]] and an unknown key there come with their
//     line, and so do errors in inline tables and in arrays of inline
//     tables. But its key paths carry no element index ([backend server
//     weight]), and drop the inline table's key for an unknown key in one
//     ([frontend vrfy] for tls = { vrfy = ... }).
//   - It stops at the first type error, and a type error hides every
//     unknown key (StrictMissingError comes only from an otherwise
//     successful decode): config reports every problem of a file at once.
//   - time.Duration: a string ("5s") is a type error, an integer is taken as
//     nanoseconds without complaint. It would need another field type,
//     which Config's users would see.
//   - It has no hook for defaults of the elements it creates: a
//     [[backend.server]] without weight gets 0, not 1.
//   - A Config needs the line of every key, not only of the wrong ones
//     (Lines, the defaults that depend on whether a key is written), which
//     only its unstable AST package would give; so the scanner stays anyway.
//   - Its syntax messages differ from the ones users and tests know.
//
// So switching would not remove the scanner and would lose problems, and
// config stays as it is.
