package remote

import (
	"strings"

	"github.com/redis/go-redis/v9"
)

// Topology: where keys live. On Redis Cluster every script must touch keys of
// one hash slot, so batches of keys are grouped by slot; on a single server
// (or behind Sentinel) there is one group.

// SlotCount is the number of hash slots in a Redis Cluster.
const SlotCount = 16384

// Slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key
// modulo 16384, where a non-empty hash tag "{...}" (the text between the
// first '{' and the first '}' after it) is hashed instead of the whole key,
// as the Redis Cluster specification defines.
func Slot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return crc16(key) % SlotCount
}

// crc16Table is CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0,
// no reflection, the variant Redis Cluster uses.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// isCluster reports whether rdb spreads keys over slots.
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// SlotOf returns the group key belongs to for one script: its Cluster hash
// slot on Redis Cluster, 0 on a single server.
func (s *Store) SlotOf(key string) uint16 {
	if !s.cluster {
		return 0
	}
	return Slot(key)
}
