// Package syncbuf is a bytes.Buffer safe for concurrent use, for the
// end-to-end tests that collect a child process's output while reading it.
package syncbuf
