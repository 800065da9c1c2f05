// Package invalidation is the invalidation bus of tiercache: the messages
// that processes exchange over Redis Pub/Sub so that each one can evict the
// entries of its local tier that a peer has just changed.
//
// Messages carry keys, never values: a peer that evicts an entry reloads it
// from Redis on its next read, so a lost or late message costs a miss, not a
// wrong answer, and the bus stays small whatever the size of the values.
//
// # Wire format
//
// A message is binary, versioned and length-prefixed, because keys may hold
// any byte, the ':' separator and NUL included:
//
//	byte 0       magic 0xC5 (anything else on the channel is ErrForeign)
//	byte 1       format version, 1 (any other is ErrVersion)
//	bytes 2-17   origin node id, so a process can ignore its own messages
//	byte 18      kind: 1 Keys, 2 Bump, 3 Flush, 4 FlushAll
//	uvarint      keyspace length, then the keyspace bytes
//	uvarint      item count
//	per item     uvarint length, then the bytes; for Bump also a uvarint
//	             version after each item
//
// Every uvarint is in its shortest form and nothing may follow the last item,
// so each Message has exactly one encoding: Decode rejects anything Encode
// would not have produced. Decode checks every length against the bytes
// that remain before it allocates, so a hostile or corrupt payload can cost
// an error, never a panic or a large allocation.
//
// Split cuts large batches into payloads of at most MaxMessageSize bytes, so
// that one PUBLISH never fills a subscriber's output buffer in one go.
//
// This file and message.go hold the format only. The publisher and the
// subscriber loop (one connection per Client, reconnects, flushing the local
// tier after each resubscription) live in bus.go.
package invalidation
