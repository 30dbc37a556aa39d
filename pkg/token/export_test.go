package token

// CacheLen is the number of tokens v's cache holds (0 when off).
func CacheLen(v *Verifier) int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}
