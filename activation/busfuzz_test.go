package activation

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// replyReader is a unitReader whose answers are one D-Bus message's body, as
// go-systemd hands them over: GetAll's a{sv} unwrapped to map[string]any,
// Get's variant as a Property.
type replyReader struct{ body []any }

func (r replyReader) GetUnitPropertiesContext(_ context.Context, unit string) (map[string]any, error) {
	if len(r.body) == 0 {
		return nil, errors.New("empty reply")
	}
	m, ok := r.body[0].(map[string]dbus.Variant)
	if !ok {
		return nil, errors.New("reply is not a{sv}")
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v.Value()
	}
	return out, nil
}

func (r replyReader) GetUnitTypePropertyContext(_ context.Context, unit, _, name string) (*sddbus.Property, error) {
	if len(r.body) == 0 {
		return nil, errors.New("empty reply")
	}
	v, ok := r.body[0].(dbus.Variant)
	if !ok {
		return nil, errors.New("reply is not a variant")
	}
	return &sddbus.Property{Name: name, Value: v}, nil
}

func encodeMessage(t testing.TB, msg *dbus.Message) []byte {
	var b bytes.Buffer
	if err := msg.EncodeTo(&b, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func reply(body ...any) *dbus.Message {
	return &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(uint32(1)),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(body...)),
	}, Body: body}
}

// decodeMessage is dbus.DecodeMessage with its panics turned into errors:
// godbus v5.1.0 (and v5.2.2) panics with EOF when a message ends inside
// the padding after its header fields (decoder.align outside the decoder's
// recover; testdata/fuzz/FuzzBusReplies/godbus-decode-panics-on-a-truncated-header).
// Its unix transport reads the padding of the header before it decodes, so
// a whole message off the socket has it.
func decodeMessage(b []byte) (msg *dbus.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("D-Bus message of %d bytes: decoder panicked: %v", len(b), r)
		}
	}()
	return dbus.DecodeMessage(bytes.NewReader(b))
}

// FuzzBusReplies decodes fuzzed bytes as a D-Bus message, as godbus does off
// the wire, and hands its body to every reader of systemd's answers in this
// package: a unit's GetAll (readUnitStates, waitActive), a socket unit's
// Listen, and a PropertiesChanged signal. None panics, and a refused answer
// is an error naming the unit.
func FuzzBusReplies(f *testing.F) {
	f.Add(encodeMessage(f, reply(map[string]dbus.Variant{
		"LoadState": dbus.MakeVariant("loaded"), "ActiveState": dbus.MakeVariant("active"), "UnitFileState": dbus.MakeVariant("enabled")})))
	f.Add(encodeMessage(f, reply(map[string]dbus.Variant{"LoadState": dbus.MakeVariant(dbus.MakeVariant(7))})))
	f.Add(encodeMessage(f, reply(dbus.MakeVariant([]struct{ A, B string }{{"Stream", "/run/podman/podman.sock"}, {"Datagram", "@x"}}))))
	f.Add(encodeMessage(f, reply("org.freedesktop.systemd1.Unit", map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("activating")}, []string{"ActiveState"})))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := decodeMessage(b)
		if err != nil {
			return
		}
		const unit = "fuzz.socket"
		named := func(what string, err error) {
			t.Helper()
			if err != nil && !strings.Contains(err.Error(), unit) && !strings.Contains(err.Error(), "reply") {
				t.Errorf("%s: error does not name the unit: %v", what, err)
			}
		}
		r := replyReader{body: msg.Body}
		_, err = readUnitStates(context.Background(), r, unit)
		named("readUnitStates", err)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		named("waitActive", waitActive(ctx, r, unit, time.Second, nil))
		cancel()
		if p, err := r.GetUnitTypePropertyContext(context.Background(), unit, "Socket", "Listen"); err == nil {
			ls, err := decodeListen(unit, p.Value)
			named("decodeListen", err)
			for _, l := range ls {
				_ = l.IsUnixStreamPath()
			}
		}
		_, _, _, err = decodePropertiesChanged(unit, msg.Body)
		_ = err // names the signal's parts, not a unit of its own
	})
}
