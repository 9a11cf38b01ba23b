// Package haproxycfg owns amqplb's haproxy.cfg importer: it reads a
// configuration written in haproxy.cfg syntax, maps it to the config.Config
// its TOML equivalent would give, with the line of every value
// (config.Lines) and warnings about what was ignored or changed, validates
// it as config does TOML (config.Validate), and converts it to annotated
// TOML (amqplb convert). Every error and warning names the file and the
// line of the directive it is about. Load, LoadLines and ConvertFile pick
// the syntax by the file's name, so that the command line takes either.
//
// It builds on package config and nothing else of amqplb; config must not
// import it, and it must not learn the TOML schema by any other way than
// config's exported types and functions.
package haproxycfg
