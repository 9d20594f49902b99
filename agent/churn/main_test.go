package churn_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/agentd-dev/agentd/internal/agenttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, agenttest.LeakOptions()...) }
