package pgcdc

import (
	"context"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Read coalescing on the replication connection. The server sends every
// pgoutput message (BEGIN, each row, COMMIT) as a write of its own; a
// consumer that keeps up reads them one at a time, each read a system call
// and a wake-up of the goroutine, which on a busy machine costs more than
// decoding. When reads come back small and in quick succession, the stream
// is busy: waiting readGather before the next read lets the messages
// that follow pile up in the socket and come in one read. A quiet stream
// (reads more than readBusy apart) is read at once, so a lone transaction is
// never delayed; a busy one by at most readGather.
const (
	readSmall  = 4 << 10 // a read of fewer bytes than this was a message or two
	readBusy   = time.Millisecond
	readGather = 100 * time.Microsecond
)

// gatheringConn is a net.Conn whose reads coalesce as described above.
// pgconn reads it from one goroutine at a time.
type gatheringConn struct {
	net.Conn
	small bool      // the last read was small
	last  time.Time // when it returned
}

func (c *gatheringConn) Read(p []byte) (int, error) {
	if c.small && time.Since(c.last) < readBusy {
		time.Sleep(readGather)
	}
	n, err := c.Conn.Read(p)
	c.small, c.last = n < readSmall, time.Now()
	return n, err
}

// gatherReads makes cfg's connections gathering ones.
func gatherReads(cfg *pgconn.Config) {
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &gatheringConn{Conn: c}, nil
	}
}
