package tiered

// Observers: one Observer made of several, for Options.Observer (which holds
// one), so that Prometheus and OpenTelemetry can both watch a Client.

import (
	"context"
	"time"
)

// Observers returns an Observer that reports to each of obs, in order (nil
// ones skipped): nil when none is left, the one itself when one is. A miss
// runs under the context the last one returned, each StartMiss receiving
// the context of the one before; its end is reported in the reverse order,
// as nested spans end.
func Observers(obs ...Observer) Observer {
	var list observerList
	for _, o := range obs {
		if o != nil {
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return list
}

type observerList []Observer

func (l observerList) LocalHit(keyspace string, latency time.Duration) {
	for _, o := range l {
		o.LocalHit(keyspace, latency)
	}
}

func (l observerList) StartMiss(ctx context.Context, keyspace string) (context.Context, func(MissEnd)) {
	ends := make([]func(MissEnd), len(l))
	for i, o := range l {
		ctx, ends[i] = o.StartMiss(ctx, keyspace)
	}
	return ctx, func(e MissEnd) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](e)
		}
	}
}
