package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// fill sets every field of the schema under v to a value that is not its
// zero value, so that a key the writer forgets shows.
func fill(v reflect.Value) {
	switch {
	case v.Type() == durationType:
		v.SetInt(int64(3 * time.Second))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x \"y\"")
	case reflect.Int:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Float64:
		v.SetFloat(0.25)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0))
		fill(v.Index(1))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e)
		v.SetMapIndex(reflect.ValueOf("k.1"), e)
	case reflect.Struct:
		for _, f := range fields(v.Type()) {
			fill(v.Field(f.index))
		}
	}
}

// TestToTOMLEveryKey checks that ToTOML writes every key of the schema
// (and the decoder reads it back), from the struct tags alone.
func TestToTOMLEveryKey(t *testing.T) {
	want := &Config{}
	fill(reflect.ValueOf(want).Elem())
	for i := range want.Backends {
		want.Backends[i].HealthCheck.PasswordEnv = "" // else the password is not written
		want.Backends[i].Discovery.PasswordEnv = ""
	}
	out := ToTOML(want)
	var raw map[string]any
	if _, err := toml.Decode(string(out), &raw); err != nil {
		t.Fatalf("ToTOML output does not parse: %v\n%s", err, out)
	}
	d := &decoder{problems: problems{file: "a.toml"}, lines: keyLines(string(out)), bad: map[string]bool{}}
	got := &Config{}
	d.table(raw, reflect.ValueOf(got).Elem(), "", nil, "")
	if err := d.err(); err != nil {
		t.Fatalf("decoding:\n%v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v\n%s", got, want, out)
	}
}
