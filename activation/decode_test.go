package activation

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

func TestDecodeListen(t *testing.T) {
	podman := []Listen{{Type: "Stream", Address: "/run/podman/podman.sock"}}
	for _, tc := range []struct {
		name    string
		in      any
		want    []Listen
		wantErr string
	}{
		{name: "a variant of a(ss) as godbus decodes it is read", in: dbus.MakeVariant([][]any{{"Stream", "/run/podman/podman.sock"}}), want: podman},
		{name: "a variant in a variant is unwrapped", in: dbus.MakeVariant(dbus.MakeVariant([][]any{{"Stream", "/run/podman/podman.sock"}})), want: podman},
		{name: "an array of interfaces holding structs is read", in: []any{[]any{"Stream", "/run/podman/podman.sock"}}, want: podman},
		{name: "fields wrapped in variants are read", in: [][]any{{dbus.MakeVariant("Stream"), dbus.MakeVariant("/run/podman/podman.sock")}}, want: podman},
		{name: "several entries keep their order", in: [][]any{{"Datagram", "/run/x"}, {"Stream", "/run/docker.sock"}}, want: []Listen{{"Datagram", "/run/x"}, {"Stream", "/run/docker.sock"}}},
		{name: "an empty array is no entries", in: dbus.MakeVariant([][]any{}), want: []Listen{}},
		{name: "a string array pair is read", in: []any{[]string{"Stream", "/run/docker.sock"}}, want: []Listen{{"Stream", "/run/docker.sock"}}},
		{name: "a wrong element type names the unit, the property and the field", in: [][]any{{"Stream", int32(3)}}, wantErr: "unit podman.socket: property Listen[0]: want (ss), field 1 is int32"},
		{name: "a struct with three fields is refused", in: [][]any{{"Stream", "/a", "/b"}}, wantErr: "got a struct of 3 fields"},
		{name: "a string instead of an array is refused", in: dbus.MakeVariant("/run/podman/podman.sock"), wantErr: "property Listen: want a(ss), got string"},
		{name: "an array of strings instead of structs is refused", in: []any{"Stream"}, wantErr: "property Listen[0]: want (ss), got string"},
		{name: "nil is refused", in: nil, wantErr: "want a(ss), got nil"},
		{name: "a nil variant pointer is refused", in: (*dbus.Variant)(nil), wantErr: "nil variant"},
		{name: "a map is refused", in: map[string]dbus.Variant{}, wantErr: "want a(ss), got map[string]dbus.Variant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeListen("podman.socket", tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestDecodeListenRefusesVariantsNestedTooDeep(t *testing.T) {
	var v any = [][]any{{"Stream", "/run/podman/podman.sock"}}
	for range maxVariantDepth + 1 {
		v = dbus.MakeVariant(v)
	}
	if _, err := decodeListen("podman.socket", v); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("error %v, want one about nesting", err)
	}
}

func TestDecodeListenOfARealMessageBody(t *testing.T) {
	// Marshal and unmarshal through godbus's wire format, as a Get reply is.
	msg := &dbus.Message{
		Type:    dbus.TypeSignal,
		Headers: map[dbus.HeaderField]dbus.Variant{dbus.FieldPath: dbus.MakeVariant(dbus.ObjectPath("/x")), dbus.FieldInterface: dbus.MakeVariant("a.b"), dbus.FieldMember: dbus.MakeVariant("C")},
		Body:    []any{dbus.MakeVariant([]struct{ A, B string }{{"Stream", "/run/docker.sock"}})},
	}
	msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(msg.Body...))
	var buf strings.Builder
	if err := msg.EncodeTo(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	back, err := dbus.DecodeMessage(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeListen("docker.socket", back.Body[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := []Listen{{"Stream", "/run/docker.sock"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}

func TestDecodeString(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      any
		want    string
		wantErr string
	}{
		{name: "a string in a variant is read", in: dbus.MakeVariant("active"), want: "active"},
		{name: "a bare string is read", in: "inactive", want: "inactive"},
		{name: "an object path is read as a string", in: dbus.ObjectPath("/a"), want: "/a"},
		{name: "an integer is refused naming unit and property", in: dbus.MakeVariant(uint32(1)), wantErr: "unit podman.socket: property ActiveState: want string, got uint32 (D-Bus u)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeString("podman.socket", "ActiveState", tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestDecodePropertiesChanged(t *testing.T) {
	for _, tc := range []struct {
		name        string
		body        []any
		iface       string
		active      string
		invalidated bool
		wantErr     bool
	}{
		{name: "a changed ActiveState is read", body: []any{unitIface, map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active")}, []string{}}, iface: unitIface, active: "active"},
		{name: "an invalidated ActiveState is flagged", body: []any{unitIface, map[string]dbus.Variant{}, []string{"ActiveState"}}, iface: unitIface, invalidated: true},
		{name: "a short body is refused", body: []any{unitIface}, wantErr: true},
		{name: "a non-string interface is refused", body: []any{int32(1), map[string]dbus.Variant{}}, wantErr: true},
		{name: "a wrongly typed ActiveState is refused", body: []any{unitIface, map[string]dbus.Variant{"ActiveState": dbus.MakeVariant(true)}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iface, active, inv, err := decodePropertiesChanged("podman.socket", tc.body)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (iface != tc.iface || active != tc.active || inv != tc.invalidated) {
				t.Fatalf("got %q %q %v", iface, active, inv)
			}
		})
	}
}

func FuzzDecodeListen(f *testing.F) {
	f.Add("Stream", "/run/podman/podman.sock", 0)
	f.Add("", "", 1)
	f.Add("Datagram", "@abstract", 2)
	f.Fuzz(func(t *testing.T, a, b string, shape int) {
		var v any
		switch shape % 5 {
		case 0:
			v = dbus.MakeVariant([][]any{{a, b}})
		case 1:
			v = []any{[]any{a}}
		case 2:
			v = []any{a, b}
		case 3:
			v = [][]any{{a, dbus.MakeVariant(b)}, {b, a}}
		default:
			v = dbus.MakeVariant(dbus.MakeVariant([]any{[]string{a, b, a}}))
		}
		_, _ = decodeListen("fuzz.socket", v)
		l := Listen{Type: a, Address: b}
		_ = l.IsUnixStreamPath()
	})
}
