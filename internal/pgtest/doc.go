// Package pgtest starts real PostgreSQL servers for tests, the way
// internal/redistest starts redis-server.
//
// tiercache's PostgreSQL change data capture (invalidation/pgcdc) promises
// at-least-once invalidation across crashes of its consumers, takeovers of
// its replication slot and outages of Redis. Those promises are about what a
// real server does with a logical replication slot, so every test that needs
// PostgreSQL starts its own through this package: initdb into a temporary
// directory, then postgres on a free 127.0.0.1 port with wal_level=logical,
// fsync=off and enough replication slots and WAL senders for the tests. The
// machine's own PostgreSQL (port 5432) is never used.
//
// PostgreSQL refuses to run as root. When the test runs as root (CI does),
// initdb and postgres run as the "postgres" user (SysProcAttr credentials),
// and the temporary directory is handed to that user.
//
// The binaries are looked up in /usr/lib/postgresql/<version>/bin (newest
// version first, Debian's layout), then in PATH. When they are missing, Start
// fails the test with the install command (apt-get install postgresql); it
// never skips: a suite that skips its database tests looks green while
// testing nothing.
//
// Start ties a server to a test and stops it in tb.Cleanup; StartE does the
// same for a TestMain, whose caller must Close it. On Linux a server also
// receives SIGQUIT (PostgreSQL's immediate shutdown, which also ends its
// backends) when the test binary dies without running its cleanups.
package pgtest
