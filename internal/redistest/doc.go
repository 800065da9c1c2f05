// Package redistest starts real redis-server processes for tests.
//
// tiercache's promises (no stale value past the documented bound, no errors
// for callers with a loader while Redis is down) are about how the library
// behaves when Redis crashes, stalls, drops connections or forgets its data.
// A mock cannot crash, so every Redis-touching test starts its own
// redis-server on a free loopback port through this package and then breaks
// it on purpose: Kill (SIGKILL, a crash), Restart (same port, empty data),
// Pause (CLIENT PAUSE: connections stay open, commands stall), KillClients
// (CLIENT KILL: connections drop) and ConfigSet.
//
// Each server runs without persistence (--save "" --appendonly no) in its own
// temporary directory, which also holds its log; a failing test prints the
// log's tail. Start ties the server to a test and kills it in tb.Cleanup;
// StartE does the same for a TestMain or a helper process, whose caller must
// Close it.
//
// StartCluster builds a 3-master, 3-replica Redis Cluster (redis-server
// --cluster-enabled, redis-cli --cluster create) and StartSentinel one master,
// one replica and three sentinels; both can kill a master and wait for the
// failover, so the library's guarantees are tested where users run it.
// StartClusterE starts a cluster that outlives one test, for tests that
// share it; its caller must Close it.
//
// A missing redis-server (or redis-cli, for a cluster) is a test failure, never a skip: a suite that skips
// its Redis tests looks green while testing nothing.
//
// On Linux a server also receives SIGKILL when the test binary dies without
// running its cleanups (a -timeout panic, os.Exit), so no orphan keeps a port
// or CPU busy on a CI machine.
package redistest
