package remote

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives the tests: a go-redis
// client or PubSub left open, or a redis-server waiter. Every client is
// closed in t.Cleanup, so nothing needs ignoring.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
