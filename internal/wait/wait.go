package wait

import (
	"context"
	"time"
)

// Sleep waits for d, reporting false when ctx ended first. d <= 0 returns at
// once, true unless ctx has already ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
