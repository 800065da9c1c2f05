// Package bench holds tiercache's side-by-side benchmarks against its peers.
package bench
