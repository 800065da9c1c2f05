package pgcdc

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// pgoutput protocol version 1, decoded with every length checked against
// the bytes present: a malformed message is an error, never a panic nor an
// allocation larger than the message. (pglogrepl's decoders allocate what a
// length field says before checking it, so a corrupt length could ask for
// gigabytes; the fuzz test found it.) Only what invalidation needs is kept.

// Message kinds (the first byte).
const (
	msgBegin    = 'B'
	msgCommit   = 'C'
	msgOrigin   = 'O'
	msgRelation = 'R'
	msgType     = 'Y'
	msgInsert   = 'I'
	msgUpdate   = 'U'
	msgDelete   = 'D'
	msgTruncate = 'T'
	msgLogical  = 'M'
)

// column is one value of a tuple: kind 'n' (NULL), 'u' (unchanged TOASTed
// value), 't' (text) or 'b' (binary). data aliases the message.
type column struct {
	kind byte
	data []byte
}

// pgMessage is one decoded message; which fields are set depends on kind.
type pgMessage struct {
	kind     byte
	finalLSN uint64   // B: the commit's LSN
	endLSN   uint64   // C: the end of the commit record
	relID    uint32   // R, I, U, D
	relation string   // R: schema.table
	columns  []string // R: column names
	old, new []column // I, U, D: the old (key or full) and new tuples, nil when absent
	relIDs   []uint32 // T
}

// msgReader reads the fields of one message; the first failure sticks.
type msgReader struct {
	b   []byte
	err error
}

func (r *msgReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated %s", errProtocol, what)
	}
}

func (r *msgReader) take(n int, what string) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.fail(what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *msgReader) u8(what string) byte {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *msgReader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *msgReader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *msgReader) u64(what string) uint64 {
	if b := r.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// str reads a NUL-terminated string.
func (r *msgReader) str(what string) string {
	if r.err != nil {
		return ""
	}
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.fail(what)
		return ""
	}
	s := string(r.b[:i])
	r.b = r.b[i+1:]
	return s
}

// tuple reads TupleData. Each column takes at least one byte, so the count
// is checked against what remains before anything is allocated.
func (r *msgReader) tuple() []column {
	n := int(r.u16("tuple"))
	if r.err != nil || n > len(r.b) {
		r.fail("tuple")
		return nil
	}
	cols := make([]column, n)
	for i := range cols {
		cols[i].kind = r.u8("tuple column")
		switch cols[i].kind {
		case 'n', 'u':
		case 't', 'b':
			cols[i].data = r.take(int(r.u32("column length")), "column value")
		default:
			if r.err == nil {
				r.err = fmt.Errorf("%w: tuple column of kind %q", errProtocol, cols[i].kind)
			}
		}
		if r.err != nil {
			return nil
		}
	}
	return cols
}

// decodeMessage decodes one pgoutput message.
func decodeMessage(data []byte) (pgMessage, error) {
	if len(data) == 0 {
		return pgMessage{}, fmt.Errorf("%w: empty message", errProtocol)
	}
	m := pgMessage{kind: data[0]}
	r := &msgReader{b: data[1:]}
	switch m.kind {
	case msgBegin:
		m.finalLSN = r.u64("BEGIN")
		r.take(12, "BEGIN") // commit time, xid
	case msgCommit:
		r.u8("COMMIT")
		r.u64("COMMIT") // the commit record's LSN; the end is what is confirmed
		m.endLSN = r.u64("COMMIT")
		r.take(8, "COMMIT")
	case msgRelation:
		decodeRelation(r, &m)
	case msgInsert:
		m.relID = r.u32("INSERT")
		if r.u8("INSERT") != 'N' && r.err == nil {
			return m, fmt.Errorf("%w: INSERT without a new tuple", errProtocol)
		}
		m.new = r.tuple()
	case msgUpdate, msgDelete:
		m.relID = r.u32("UPDATE or DELETE")
		next := r.u8("UPDATE or DELETE")
		if next == 'K' || next == 'O' {
			m.old = r.tuple()
			if m.kind == msgUpdate {
				next = r.u8("UPDATE")
			}
		}
		switch {
		case r.err != nil:
		case m.kind == msgUpdate && next == 'N':
			m.new = r.tuple()
		case m.kind == msgUpdate || m.old == nil:
			return m, fmt.Errorf("%w: %c message with tuple marker %q", errProtocol, m.kind, next)
		}
	case msgTruncate:
		n := int(r.u32("TRUNCATE"))
		r.u8("TRUNCATE") // options: CASCADE, RESTART IDENTITY
		if r.err == nil && n > len(r.b)/4 {
			r.fail("TRUNCATE")
		}
		for i := 0; i < n && r.err == nil; i++ {
			m.relIDs = append(m.relIDs, r.u32("TRUNCATE"))
		}
	case msgOrigin, msgType, msgLogical:
		return m, nil // nothing to invalidate
	default:
		return m, fmt.Errorf("%w: message kind %q (pgoutput protocol version 1 has none such)", errProtocol, m.kind)
	}
	return m, r.err
}

func decodeRelation(r *msgReader, m *pgMessage) {
	m.relID = r.u32("RELATION")
	schema := r.str("RELATION namespace")
	m.relation = schema + "." + r.str("RELATION name")
	r.u8("RELATION replica identity")
	n := int(r.u16("RELATION"))
	if r.err != nil || n > len(r.b) {
		r.fail("RELATION")
		return
	}
	m.columns = make([]string, n)
	for i := range m.columns {
		r.u8("RELATION column flags")
		m.columns[i] = r.str("RELATION column name")
		r.take(8, "RELATION column type") // type OID, type modifier
	}
}
