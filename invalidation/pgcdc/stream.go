package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
)

const (
	// receivePoll bounds one wait for a replication message, so that the
	// session notices the applier's progress and reports it promptly.
	receivePoll = 100 * time.Millisecond
	// feedbackGap is the least time between two status updates sent only
	// because the confirmed position moved.
	feedbackGap  = 20 * time.Millisecond
	closeTimeout = time.Second // bound on the goodbye to the server at Close
)

// errSlotBusy means another consumer holds the slot: this Watcher is a
// standby for now.
var errSlotBusy = errors.New("pgcdc: the slot is active for another consumer")

// runStream holds or waits for the slot until Close: one session after
// another, a standby's wait or a backoff after a failure between them.
func (w *Watcher) runStream() {
	defer w.wg.Done()
	backoff := w.cfg.RetryBackoff
	waited := false // was a standby since it last held the slot
	for w.ctx.Err() == nil {
		held, err := w.session(waited)
		w.st.standby.Store(errors.Is(err, errSlotBusy))
		if held {
			waited, backoff = false, w.cfg.RetryBackoff
		}
		wait := backoff
		switch {
		case w.ctx.Err() != nil:
			return
		case errors.Is(err, errSlotBusy):
			waited, wait = true, w.cfg.StandbyRetry
		case err != nil:
			w.st.errors.Add(1)
			w.warn.Warn("pgcdc: replication session failed; reconnecting", zap.String("slot", w.cfg.Slot), zap.Error(err))
			backoff = min(2*backoff, w.cfg.MaxRetryBackoff)
		}
		if !sleep(w.ctx, wait) {
			return
		}
	}
}

// session connects, takes the slot and streams until an error or Close. It
// reports whether it held the slot.
func (w *Watcher) session(waited bool) (held bool, err error) {
	conn, err := pgconn.ConnectConfig(w.ctx, w.repl)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	floor, err := w.slotFloor(conn)
	if err != nil {
		return false, err
	}
	err = pglogrepl.StartReplication(w.ctx, conn, w.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names '" + strings.ReplaceAll(w.cfg.Publication, "'", "''") + "'",
		},
	})
	if isCode(err, codeObjectInUse) {
		return false, errSlotBusy
	}
	if err != nil {
		return false, fmt.Errorf("start replication on slot %q: %w", w.cfg.Slot, err)
	}
	w.led.raise(floor)
	w.st.standby.Store(false)
	w.st.active.Store(true)
	defer w.st.active.Store(false)
	if waited {
		w.st.takeovers.Add(1)
		w.log.Info("pgcdc: took over the replication slot", zap.String("slot", w.cfg.Slot), zap.Uint64("from_lsn", floor))
	}
	return true, w.stream(conn)
}

// stream reads the replication stream, hands each committed transaction to
// the applier and reports the confirmable position, until an error or Close.
func (w *Watcher) stream(conn *pgconn.PgConn) error {
	d := newDecoder(w)
	var sent uint64
	var lastSent time.Time
	reply := true // report at once: the server learns where this consumer stands
	// Receives wait on a read deadline of the connection, set once per
	// receivePoll window, rather than on a context per message: pgconn
	// watches every context it is given (a registration and its removal
	// per message), which cost more than decoding the message. Close ends
	// a wait by moving the deadline to now.
	var until time.Time
	stop := context.AfterFunc(w.ctx, func() { _ = conn.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	for {
		now := time.Now()
		if conf := w.led.confirmable(); reply || conf > sent && now.Sub(lastSent) >= feedbackGap || now.Sub(lastSent) >= w.cfg.StatusInterval {
			if err := w.confirm(conn, conf); err != nil {
				return err
			}
			sent, lastSent, reply = conf, now, false
		}
		if !now.Before(until) && w.ctx.Err() == nil {
			until = now.Add(receivePoll)
			if err := conn.Conn().SetReadDeadline(until); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
		}
		msg, err := conn.ReceiveMessage(context.Background())
		switch {
		case w.ctx.Err() != nil:
			w.goodbye(conn)
			return nil
		case pgconn.Timeout(err):
			continue
		case err != nil:
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			keepalive, err := w.receive(d, msg.Data)
			if err != nil {
				return err
			}
			// A keepalive is the server waiting to hear where we are: answer
			// when asked, or when the position moved (it sends no other one
			// until we answer).
			reply = reply || keepalive.ReplyRequested || keepalive.seen && w.led.confirmable() > sent
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.CopyDone:
			return errors.New("the server ended the replication stream")
		}
	}
}

// keepalive is what stream needs to know of a primary keepalive message.
type keepalive struct {
	seen           bool // the message was a keepalive
	ReplyRequested bool
}

// receive handles one CopyData message of the stream.
func (w *Watcher) receive(d *decoder, data []byte) (keepalive, error) {
	if len(data) == 0 {
		return keepalive{}, fmt.Errorf("%w: empty CopyData", errProtocol)
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return keepalive{}, fmt.Errorf("%w: %v", errProtocol, err)
		}
		raiseMax(&w.st.serverLSN, uint64(k.ServerWALEnd))
		if !d.inTxn() {
			w.led.idle(uint64(k.ServerWALEnd))
		}
		return keepalive{seen: true, ReplyRequested: k.ReplyRequested}, nil
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return keepalive{}, fmt.Errorf("%w: %v", errProtocol, err)
		}
		raiseMax(&w.st.serverLSN, uint64(x.ServerWALEnd))
		b, err := d.handle(x.WALData)
		if err != nil {
			return keepalive{}, err
		}
		if b != nil {
			w.led.commit(b)
		}
	}
	return keepalive{}, nil
}

// confirm sends a standby status update confirming lsn. Write, flush and
// apply positions are all lsn: pglogrepl would copy the write position into
// a zero flush, and the server's slot advances by the flush position.
func (w *Watcher) confirm(conn *pgconn.PgConn, lsn uint64) error {
	err := pglogrepl.SendStandbyStatusUpdate(w.ctx, conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(lsn),
		WALFlushPosition: pglogrepl.LSN(lsn),
		WALApplyPosition: pglogrepl.LSN(lsn),
	})
	if err != nil {
		return fmt.Errorf("send standby status update: %w", err)
	}
	raiseMax(&w.st.confirmed, lsn)
	return nil
}

// goodbye confirms what is applied before the connection closes at Close,
// so that the next holder of the slot repeats as little as possible.
func (w *Watcher) goodbye(conn *pgconn.PgConn) {
	if lsn := w.led.confirmable(); lsn > 0 {
		_ = w.confirm(conn, lsn)
	}
}

// sleep waits d or until ctx is done; false when ctx is done.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
