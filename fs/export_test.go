package fs

// CrashForTest abandons the tree as a killed process would: nothing more is
// uploaded or written to the journal, whose lock is released.
func (f *FS) CrashForTest() {
	f.mu.Lock()
	f.closed = true
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	f.mu.Unlock()
	if f.jr != nil {
		f.jr.Close()
	}
}
