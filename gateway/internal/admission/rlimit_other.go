//go:build !unix

package admission

// DefaultMaxConns is 0 (no cap) where the open-file limit cannot be read.
func DefaultMaxConns() int { return 0 }
