package vault

// Scanned reports whether r had to build its index with a headers-only scan
// (chunks not contiguous, or not uniform) instead of the fast path.
func (r *ReaderAt) Scanned() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.offsets != nil
}
