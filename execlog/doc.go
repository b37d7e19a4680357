// Package execlog writes exec.log, the JSON Lines capture of every exec
// session's output that the relay taps from the guest stream.
//
// Each line is one chunk:
//
//	{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"hello\n","id":1}
//
// formatted byte for byte as microsandbox 0.4.4 does (serde_json escaping,
// invalid UTF-8 replaced like Rust's String::from_utf8_lossy). Unlike the
// original, appending never waits for the disk: producers copy raw chunks
// into bounded per-producer rings (a [Lane] is lock-free for the reactor's
// single thread) and one writer goroutine formats and writes them, rotating
// at [Options.MaxFileSize] and keeping exactly [Options.Keep] old files.
// When a ring is full the chunk is dropped, counted, and reported in the log
// once the writer has caught up.
package execlog
