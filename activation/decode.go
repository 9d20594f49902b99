package activation

import (
	"fmt"
	"path"
	"strings"

	"github.com/godbus/dbus/v5"
)

// maxVariantDepth bounds how many variants are unwrapped around a value; a
// property nested deeper is refused rather than followed.
const maxVariantDepth = 8

// Listen is one entry of a socket unit's Listen property (a(ss)): the kind
// ("Stream", "Datagram", "SequentialPacket", "FIFO", "Netlink", ...) and the
// address (a path, "@abstract", "host:port", ...).
type Listen struct {
	Type    string
	Address string
}

// IsUnixStreamPath reports whether the entry is a stream socket on a file
// system path: the only kind an engine API listens on.
func (l Listen) IsUnixStreamPath() bool {
	return l.Type == "Stream" && strings.HasPrefix(l.Address, "/")
}

// unwrap removes up to maxVariantDepth levels of dbus.Variant around v.
func unwrap(v any) (any, error) {
	for range maxVariantDepth {
		switch x := v.(type) {
		case dbus.Variant:
			v = x.Value()
		case *dbus.Variant:
			if x == nil {
				return nil, fmt.Errorf("nil variant")
			}
			v = x.Value()
		default:
			return v, nil
		}
	}
	if _, ok := v.(dbus.Variant); ok {
		return nil, fmt.Errorf("variants nested deeper than %d", maxVariantDepth)
	}
	return v, nil
}

// propError names the unit and the property a decoding error is about.
func propError(unit, prop string, err error) error {
	return fmt.Errorf("unit %s: property %s: %w", unit, prop, err)
}

// decodeString decodes a D-Bus string property value (possibly in variants).
func decodeString(unit, prop string, v any) (string, error) {
	u, err := unwrap(v)
	if err != nil {
		return "", propError(unit, prop, err)
	}
	switch s := u.(type) {
	case string:
		return s, nil
	case dbus.ObjectPath:
		return string(s), nil
	}
	return "", propError(unit, prop, fmt.Errorf("want string, got %s", typeName(u)))
}

// decodeStrings decodes a D-Bus as property value (possibly in variants).
func decodeStrings(unit, prop string, v any) ([]string, error) {
	u, err := unwrap(v)
	if err != nil {
		return nil, propError(unit, prop, err)
	}
	switch s := u.(type) {
	case []string:
		return s, nil
	case []any:
		out := make([]string, 0, len(s))
		for i, e := range s {
			str, err := decodeString(unit, fmt.Sprintf("%s[%d]", prop, i), e)
			if err != nil {
				return nil, err
			}
			out = append(out, str)
		}
		return out, nil
	}
	return nil, propError(unit, prop, fmt.Errorf("want array of strings, got %s", typeName(u)))
}

// decodeListen decodes a socket unit's Listen property, type a(ss). godbus
// hands a struct array over as [][]any; a hand-built value may come as []any
// of []any, of [2]string or of Listen. Anything else is an error naming the
// unit, the property and the offending element; it never panics.
func decodeListen(unit string, v any) ([]Listen, error) {
	const prop = "Listen"
	u, err := unwrap(v)
	if err != nil {
		return nil, propError(unit, prop, err)
	}
	var elems []any
	switch a := u.(type) {
	case nil:
		return nil, propError(unit, prop, fmt.Errorf("want a(ss), got nil"))
	case []Listen:
		return append([]Listen(nil), a...), nil
	case [][]any:
		elems = make([]any, len(a))
		for i := range a {
			elems[i] = a[i]
		}
	case [][2]string:
		out := make([]Listen, len(a))
		for i, e := range a {
			out[i] = Listen{Type: e[0], Address: e[1]}
		}
		return out, nil
	case []any:
		elems = a
	default:
		return nil, propError(unit, prop, fmt.Errorf("want a(ss), got %s", typeName(u)))
	}
	out := make([]Listen, 0, len(elems))
	for i, e := range elems {
		l, err := decodeListenEntry(e)
		if err != nil {
			return nil, propError(unit, fmt.Sprintf("%s[%d]", prop, i), err)
		}
		out = append(out, l)
	}
	return out, nil
}

func decodeListenEntry(e any) (Listen, error) {
	u, err := unwrap(e)
	if err != nil {
		return Listen{}, err
	}
	var fields []any
	switch x := u.(type) {
	case Listen:
		return x, nil
	case [2]string:
		return Listen{Type: x[0], Address: x[1]}, nil
	case []string:
		if len(x) != 2 {
			return Listen{}, fmt.Errorf("want (ss), got %d strings", len(x))
		}
		return Listen{Type: x[0], Address: x[1]}, nil
	case []any:
		fields = x
	default:
		return Listen{}, fmt.Errorf("want (ss), got %s", typeName(u))
	}
	if len(fields) != 2 {
		return Listen{}, fmt.Errorf("want (ss), got a struct of %d fields", len(fields))
	}
	var out [2]string
	for i, f := range fields {
		fu, err := unwrap(f)
		if err != nil {
			return Listen{}, err
		}
		s, ok := fu.(string)
		if !ok {
			return Listen{}, fmt.Errorf("want (ss), field %d is %s", i, typeName(fu))
		}
		out[i] = s
	}
	return Listen{Type: out[0], Address: out[1]}, nil
}

// typeName describes the Go type of a decoded D-Bus value for error messages.
func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	if sig := dbusSignature(v); sig != "" {
		return fmt.Sprintf("%T (D-Bus %s)", v, sig)
	}
	return fmt.Sprintf("%T", v)
}

// dbusSignature returns the D-Bus signature of v, "" when v has none. godbus
// panics on types it cannot describe, so that is recovered here.
func dbusSignature(v any) (sig string) {
	defer func() {
		if recover() != nil {
			sig = ""
		}
	}()
	return dbus.SignatureOf(v).String()
}

// cleanListenPath normalises a Listen address that is a path.
func cleanListenPath(p string) string {
	return path.Clean(p)
}
