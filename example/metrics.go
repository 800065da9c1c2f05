package main

// -metrics: the replicas' metrics in the Prometheus text format, served on
// /metrics while the example runs (tiered/tieredprom).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/tieredprom"
)

// metrics is the registry the replicas report to, and its HTTP server.
type metrics struct {
	reg  *prometheus.Registry
	srv  *http.Server
	addr string // where it listens
}

// startMetrics serves /metrics on addr ("host:port"; ":0" picks a port).
func startMetrics(addr string) (*metrics, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %w", addr, err)
	}
	m := &metrics{reg: prometheus.NewRegistry(), addr: l.Addr().String()}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("example: /metrics:", err)
		}
	}()
	return m, nil
}

// observer returns the Observer replica name reports its latencies to.
func (m *metrics) observer(name string) (tiered.Observer, error) {
	if m == nil {
		return nil, nil
	}
	obs, err := tieredprom.NewObserver()
	if err != nil {
		return nil, err
	}
	return obs, prometheus.WrapRegistererWith(prometheus.Labels{"replica": name}, m.reg).Register(obs)
}

// register adds the counters of replica name's Client.
func (m *metrics) register(name string, c *tiered.Client) error {
	if m == nil {
		return nil
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"replica": name}, m.reg).Register(tieredprom.NewCollector(c))
}

func (m *metrics) close() {
	if m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = m.srv.Shutdown(ctx)
	}
}
