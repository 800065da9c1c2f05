package tiered

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// traceObserver records the order of its calls in a shared log and puts its
// name in the context.
type traceObserver struct {
	name string
	log  *[]string
}

type observerNameKey struct{}

func (o traceObserver) LocalHit(keyspace string, latency time.Duration) {
	*o.log = append(*o.log, o.name+" hit "+keyspace+" "+latency.String())
}

func (o traceObserver) StartMiss(ctx context.Context, keyspace string) (context.Context, func(MissEnd)) {
	parent, _ := ctx.Value(observerNameKey{}).(string)
	*o.log = append(*o.log, o.name+" start "+keyspace+" under "+parent)
	return context.WithValue(ctx, observerNameKey{}, o.name), func(e MissEnd) {
		*o.log = append(*o.log, o.name+" end "+e.Tier.String())
	}
}

func TestObservers(t *testing.T) {
	var log []string
	a, b := traceObserver{"a", &log}, traceObserver{"b", &log}
	if Observers() != nil || Observers(nil, nil) != nil {
		t.Fatal("no observers: want nil")
	}
	if Observers(nil, a) != Observer(a) {
		t.Fatal("one observer: want itself")
	}
	o := Observers(a, nil, b)
	o.LocalHit("user", time.Microsecond)
	ctx, end := o.StartMiss(context.WithValue(context.Background(), observerNameKey{}, "caller"), "user")
	if got := ctx.Value(observerNameKey{}); got != "b" {
		t.Fatalf("the miss runs under %v's context, want b's", got)
	}
	end(MissEnd{Tier: TierRedis})
	want := []string{
		"a hit user 1µs", "b hit user 1µs",
		"a start user under caller", "b start user under a",
		"b end redis", "a end redis",
	}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("calls:\n%q\nwant\n%q", log, want)
	}
}
