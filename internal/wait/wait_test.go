package wait

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"a short wait ends", context.Background(), time.Millisecond, true},
		{"no wait ends at once", context.Background(), 0, true},
		{"an ended context wins over a long wait", ended, time.Hour, false},
		{"an ended context wins over no wait", ended, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sleep(tt.ctx, tt.d); got != tt.want {
				t.Fatalf("Sleep = %v, want %v", got, tt.want)
			}
		})
	}
}
