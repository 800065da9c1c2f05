// Package tieredprom exports a tiered.Client's metrics to Prometheus: every
// field of tiered.Stats (one series per keyspace) and tiered.ClientStats,
// and latency histograms of Gets per keyspace and tier.
//
// It is a Go module of its own, so that users of tiercache who do not use
// Prometheus never see its dependencies.
//
// Two parts, because the Client takes its Observer when it is made and the
// collector needs the Client:
//
//	obs, _ := tieredprom.NewObserver()                   // the histograms
//	c, _ := tiered.NewClient(tiered.Options{Redis: rdb, Observer: obs})
//	reg.MustRegister(obs, tieredprom.NewCollector(c))    // both are Collectors
//
// To feed OpenTelemetry as well, combine the observers:
// tiered.Observers(obs, otelObs).
//
// # Names
//
// Every field of Stats and ClientStats is a metric named tiercache_ and the
// field in snake case, found by reflection, so that fields added to the
// structs appear without a change here:
//
//   - uint64 fields are counters, with the suffix _total:
//     tiercache_local_hits_total{keyspace="user"}.
//   - int fields are gauges: tiercache_local_entries{keyspace="user"},
//     tiercache_replay_pending.
//   - time.Duration fields are in seconds: Degraded, a total, is the counter
//     tiercache_degraded_seconds_total; SinceHealthy, an age, the gauge
//     tiercache_since_healthy_seconds.
//   - BreakerState is a gauge per state, 1 for the current one and 0 for the
//     others: tiercache_breaker_state{state="open"}.
//
// Keyspace metrics carry the label keyspace and cover every keyspace of the
// Client at each scrape, those created after NewCollector included; Client
// metrics have no label. The help text of each is the field's comment.
//
// # Latency
//
// tiercache_get_duration_seconds{keyspace, tier} is a histogram of Get and
// GetMany latencies by the tier that answered: "local", "redis", "loader",
// "stale", or "none" (a call that failed before any tier answered). Its
// buckets are explicit (classic) ones, readable in the text format by every
// Prometheus: 1, 2.5 and 5 of every decade from 10ns to 10s, or those given
// to WithBuckets. Misses are all observed; local hits are sampled, one in
// tiered.LocalHitSampling (64), so the tier="local" series count a sample:
// read rates of hits from tiercache_local_hits_total and the latency
// distribution from the histogram.
//
// Two Clients in one registry: register each Client's collector and
// Observer through prometheus.WrapRegistererWith with a label of its own
// (client="a", client="b"); without, the second registration fails as a
// duplicate.
package tieredprom
