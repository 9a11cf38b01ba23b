package amqpwire

import (
	"fmt"
)

// DecodeStartOk decodes a Connection.Start-Ok method payload (class and method ids first, as
// DecodeMethod takes it) without building its client-properties table: a balancer reads one on
// every connection and needs a few of its strings. Of Start-Ok payloads it accepts and refuses
// exactly those DecodeMethod does, with the same errors, since it reads through the same steps
// and only skips building values (any other method is refused). Of the client properties it keeps those named in keys, each rendered by
// PropertyString into props[i] ("" when missing; the last one wins, as in a Table). props must
// be as long as keys.
func DecodeStartOk(payload []byte, keys []string, props []string) (mechanism, response string, err error) {
	d := decoder{buf: payload}
	class, method := d.u16(), d.u16()
	if d.err != nil {
		return "", "", fmt.Errorf("%w: method payload of %d octets is too short", ErrMalformed, len(payload))
	}
	if class != ClassConnection || method != MethodStartOk {
		return "", "", fmt.Errorf("%w: %s, not %s", ErrMalformed, MethodName(class, method), MethodName(ClassConnection, MethodStartOk))
	}
	clear(props)
	d.tableKeeping(keys, props)
	mechanism = d.shortstr()
	response = d.longstr()
	_ = d.shortstr() // locale
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d octets after the arguments", len(d.buf)-d.off)
	}
	if d.err != nil {
		clear(props)
		return "", "", fmt.Errorf("decode %s: %w", MethodName(class, method), d.err)
	}
	return mechanism, response, nil
}

// PropertyString renders a decoded table value as text: a string or byte array as it is,
// nothing for a void or missing value, anything else as fmt.Sprint does.
func PropertyString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// tableKeeping is table at depth 0 that builds nothing but the values of keys (see
// DecodeStartOk). Each step mirrors table's, so that both fail alike.
func (d *decoder) tableKeeping(keys []string, props []string) {
	raw := d.longbytes("table")
	if d.err != nil {
		return
	}
	sub := decoder{buf: raw}
	for sub.err == nil && sub.off < len(sub.buf) {
		n := sub.u8()
		k := sub.take(int(n), "shortstr")
		i := -1
		for j, key := range keys {
			if string(k) == key {
				i = j
				break
			}
		}
		start := sub.off
		sub.skipField(0)
		if sub.err == nil && i >= 0 {
			v := (&decoder{buf: sub.buf[start:sub.off]}).field(0)
			props[i] = PropertyString(v)
		}
	}
	if sub.err != nil {
		d.err = sub.err
	}
}

// skipTable is table without building it.
func (d *decoder) skipTable(depth int) {
	raw := d.longbytes("table")
	if d.err != nil {
		return
	}
	if depth > maxNesting {
		d.fail("tables nested deeper than %d", maxNesting)
		return
	}
	sub := decoder{buf: raw}
	for sub.err == nil && sub.off < len(sub.buf) {
		n := sub.u8()
		sub.take(int(n), "shortstr")
		sub.skipField(depth)
	}
	if sub.err != nil {
		d.err = sub.err
	}
}

// skipArray is array without building it.
func (d *decoder) skipArray(depth int) {
	raw := d.longbytes("array")
	if d.err != nil {
		return
	}
	if depth > maxNesting {
		d.fail("arrays nested deeper than %d", maxNesting)
		return
	}
	sub := decoder{buf: raw}
	for sub.err == nil && sub.off < len(sub.buf) {
		sub.skipField(depth)
	}
	if sub.err != nil {
		d.err = sub.err
	}
}

// skipField is field without building the value: the same reads in the same order.
func (d *decoder) skipField(depth int) {
	typ := d.u8()
	if d.err != nil {
		return
	}
	switch typ {
	case 't', 'b', 'B':
		d.u8()
	case 's', 'u':
		d.u16()
	case 'I', 'i', 'f':
		d.u32()
	case 'l', 'd', 'T':
		d.u64()
	case 'D':
		d.u8()
		d.u32()
	case 'S':
		d.longbytes("longstr")
	case 'x':
		d.longbytes("byte array")
	case 'A':
		d.skipArray(depth + 1)
	case 'F':
		d.skipTable(depth + 1)
	case 'V':
	default:
		d.fail("unknown field type %q (0x%02x) at offset %d", rune(typ), typ, d.off-1)
	}
}
