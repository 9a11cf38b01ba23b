package config

// parseHAProxy will import data written in haproxy.cfg syntax; file names
// the data in messages.
func parseHAProxy(file string, data []byte) (*Config, error) {
	return nil, ErrorList{{File: file, Msg: "haproxy.cfg import is not supported yet; use a .toml file"}}
}
