package config

import (
	"reflect"
	"strings"
)

// field is a struct field of the schema: a Config type's field with a toml
// tag (see Config for the options).
type field struct {
	index     int    // in the struct
	key       string // the TOML key
	omitempty bool
	inline    bool
	unless    string // key of a sibling field that, when not zero, leaves this one out
	heartbeat bool   // a duration that also takes the word "heartbeat" (IdleHeartbeat)
}

// fields returns the fields of the struct type t that have a TOML key, in
// their order.
func fields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := field{index: i, key: name}
		for _, opt := range strings.Split(opts, ",") {
			switch o, arg, _ := strings.Cut(opt, "="); o {
			case "":
			case "omitempty":
				f.omitempty = true
			case "inline":
				f.inline = true
			case "unless":
				f.unless = arg
			case "heartbeat":
				f.heartbeat = true
			default:
				panic("config: unknown toml tag option " + o + " on " + t.Name() + "." + t.Field(i).Name)
			}
		}
		out = append(out, f)
	}
	return out
}
