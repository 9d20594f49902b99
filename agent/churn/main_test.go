package churn_test

import (
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"github.com/agentd-dev/agentd/internal/agenttest"
)

func TestMain(m *testing.M) {
	// A heap profile fine enough to name what the agent keeps after the
	// churn (see heapGrowth): one sample per 16 KiB allocated, set before
	// the agent allocates.
	runtime.MemProfileRate = 16 << 10
	goleak.VerifyTestMain(m, agenttest.LeakOptions()...)
}
