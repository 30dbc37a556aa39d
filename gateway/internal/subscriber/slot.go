package subscriber

import "strings"

// slotCount is the number of hash slots of Redis Cluster.
const slotCount = 16384

// slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key, or
// of its hash tag "{...}" when it has a non-empty one, modulo 16384. Redis's
// cluster specification defines it; go-redis keeps its copy internal.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % slotCount)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
