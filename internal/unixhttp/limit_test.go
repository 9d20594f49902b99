package unixhttp

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLimit(t *testing.T) {
	line := strings.Repeat("x", 100) + "\n"
	for _, tc := range []struct {
		name    string
		path    string
		body    string
		tooLong bool
	}{
		{"an answer of the limit is read whole", "/containers/json", strings.Repeat("a", MaxAnswer), false},
		{"an answer past the limit fails the read", "/containers/json", strings.Repeat("a", MaxAnswer+1), true},
		{"a stream of many short lines is read whole, past the answer limit", "/v1.41/events", strings.Repeat(line, MaxAnswer/len(line)+10), false},
		{"a stream line of the limit is read whole", "/v1.41/events", strings.Repeat("e", MaxLine) + "\n", false},
		{"a stream line past the limit fails the read", "/v1.41/events", line + strings.Repeat("e", MaxLine+1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := &http.Client{Transport: Limit(srv.Client().Transport, "/events")}
			defer c.CloseIdleConnections()
			resp, err := c.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			switch {
			case tc.tooLong && !errors.Is(err, ErrTooLarge):
				t.Fatalf("read %d bytes, err %v; want ErrTooLarge", n, err)
			case tc.tooLong && !strings.Contains(err.Error(), tc.path):
				t.Fatalf("error %v does not name the path %s", err, tc.path)
			case !tc.tooLong && (err != nil || n != int64(len(tc.body))):
				t.Fatalf("read %d of %d bytes, err %v", n, len(tc.body), err)
			}
		})
	}
}
