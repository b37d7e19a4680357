package ring

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func newRing(t testing.TB, capacity int) *Ring {
	t.Helper()
	r, err := New(capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestNewCapacity(t *testing.T) {
	for _, c := range []int{1, 2, 64, 4096, 1 << 20} {
		r, err := New(c)
		if err != nil {
			t.Errorf("New(%d): %v", c, err)
			continue
		}
		if r.Cap() != c || r.Free() != c || r.Len() != 0 {
			t.Errorf("New(%d): Cap %d Free %d Len %d", c, r.Cap(), r.Free(), r.Len())
		}
		r.Close()
	}
	r := newRing(t, 0)
	if r.Cap() != DefaultCapacity {
		t.Errorf("New(0).Cap() = %d, want DefaultCapacity %d", r.Cap(), DefaultCapacity)
	}
	for _, c := range []int{3, 6, 1000, 1<<20 + 1, -4, -1, MaxCapacity * 2} {
		r, err := New(c)
		if err == nil {
			r.Close()
			t.Errorf("New(%d) succeeded", c)
			continue
		}
		if !strings.Contains(err.Error(), "not a power of two") {
			t.Errorf("New(%d): unclear error %q", c, err)
		}
	}
	if _, err := NewConsole(1000); err == nil {
		t.Error("NewConsole(1000) succeeded")
	}
}

func TestWriteFull(t *testing.T) {
	r := newRing(t, 16)
	p := []byte("0123456789abcdefghij")
	if n := r.Write(p); n != 16 {
		t.Fatalf("Write(20 bytes) into 16 = %d", n)
	}
	if r.Free() != 0 || r.Len() != 16 {
		t.Fatalf("Free %d Len %d, want 0 16", r.Free(), r.Len())
	}
	if n := r.Write(p[16:]); n != 0 {
		t.Fatalf("Write into a full ring = %d", n)
	}
	r.Consume(5)
	if r.Free() != 5 || r.Len() != 11 {
		t.Fatalf("after Consume(5): Free %d Len %d, want 5 11", r.Free(), r.Len())
	}
	if n := r.Write(p[16:]); n != 4 {
		t.Fatalf("Write(4) = %d", n)
	}
	got := make([]byte, 32)
	n := r.CopyOut(got)
	if want := "56789abcdefghij"; string(got[:n]) != want {
		t.Fatalf("CopyOut = %q, want %q", got[:n], want)
	}
	if r.Write(nil) != 0 {
		t.Fatal("Write(nil) != 0")
	}
}

func TestPeekWrap(t *testing.T) {
	r := newRing(t, 8)
	if a, b := r.Peek(); len(a) != 0 || len(b) != 0 {
		t.Fatalf("empty ring Peek = %q %q", a, b)
	}
	r.Write([]byte("xxxxxx"))
	r.Consume(6) // head at 6: two bytes before the end of the buffer

	r.Write([]byte("ABCDE"))
	a, b := r.Peek()
	if string(a) != "AB" || string(b) != "CDE" {
		t.Fatalf("wrapped Peek = %q %q, want AB CDE", a, b)
	}
	if got := r.Readable(); string(got) != "AB" {
		t.Fatalf("Readable = %q, want the span up to the end, AB", got)
	}
	if r.Len() != 5 {
		t.Fatalf("Len = %d", r.Len())
	}
	// The spans must not let an append run into the ring.
	if cap(a) != len(a) || cap(b) != len(b) {
		t.Fatalf("spans have spare capacity: %d/%d %d/%d", len(a), cap(a), len(b), cap(b))
	}

	// A wrapping frame is copied out into linear scratch, not consumed.
	scratch := make([]byte, 4)
	if n := r.CopyOut(scratch); n != 4 || string(scratch) != "ABCD" {
		t.Fatalf("CopyOut(4) = %d %q", n, scratch)
	}
	if n := r.CopyOut(scratch[:1]); n != 1 || scratch[0] != 'A' {
		t.Fatalf("CopyOut(1) = %d %q", n, scratch[:1])
	}
	if r.Len() != 5 {
		t.Fatalf("CopyOut consumed: Len = %d", r.Len())
	}

	r.Consume(2)
	a, b = r.Peek()
	if string(a) != "CDE" || b != nil {
		t.Fatalf("after consuming the first span: Peek = %q %q", a, b)
	}

	// Readable bytes that end exactly at the buffer end do not wrap.
	r.Consume(3) // head 11 → index 3
	r.Write([]byte("01234"))
	a, b = r.Peek()
	if string(a) != "01234" || len(b) != 0 {
		t.Fatalf("Peek = %q %q, want 01234 and nothing", a, b)
	}
}

func TestWritableCommit(t *testing.T) {
	r := newRing(t, 8)
	w := r.Writable()
	if len(w) != 8 {
		t.Fatalf("Writable on empty = %d bytes", len(w))
	}
	copy(w, "hello")
	r.Commit(5)
	r.Consume(5)
	w = r.Writable() // from index 5 to the end only
	if len(w) != 3 || cap(w) != 3 {
		t.Fatalf("Writable = %d/%d bytes, want 3/3", len(w), cap(w))
	}
	copy(w, "abc")
	r.Commit(3)
	if w = r.Writable(); len(w) != 5 {
		t.Fatalf("Writable after wrap = %d bytes, want 5", len(w))
	}
	if got := r.Readable(); string(got) != "abc" {
		t.Fatalf("Readable = %q", got)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Commit beyond the free space did not panic")
			}
		}()
		r.Commit(6)
	}()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Consume beyond the readable bytes did not panic")
			}
		}()
		r.Consume(4)
	}()
}

func TestCloseWriteEOF(t *testing.T) {
	r := newRing(t, 16)
	r.Write([]byte("abc"))
	r.CloseWrite()
	if !r.Closed() {
		t.Fatal("Closed() false after CloseWrite")
	}
	if r.ArmData() {
		t.Fatal("ArmData true with data and EOF pending")
	}
	if n := r.Write([]byte("d")); n != 0 {
		t.Fatalf("Write after CloseWrite = %d", n)
	}
	if err := r.WriteAll([]byte("d"), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteAll after CloseWrite: %v", err)
	}
	buf := make([]byte, 2)
	var got []byte
	for {
		n, err := r.Read(buf, time.Now().Add(5*time.Second))
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "abc" {
		t.Fatalf("read %q before EOF, want abc", got)
	}
	if r.ArmData() {
		t.Fatal("ArmData true at EOF: the consumer would sleep forever")
	}
	if n, err := r.Read(buf, time.Time{}); n != 0 || err != io.EOF {
		t.Fatalf("Read at EOF = %d, %v", n, err)
	}
}

func TestCloseWriteWakesBlockedRead(t *testing.T) {
	r := newRing(t, 16)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 4), time.Now().Add(10*time.Second))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.CloseWrite()
	if err := <-done; err != io.EOF {
		t.Fatalf("blocked Read after CloseWrite: %v, want io.EOF", err)
	}
}

func TestCloseReadFailsWriter(t *testing.T) {
	r := newRing(t, 16)
	done := make(chan error, 1)
	go func() {
		// 40 bytes into 16: blocks until CloseRead.
		done <- r.WriteAll(make([]byte, 40), time.Now().Add(10*time.Second))
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("WriteAll returned before CloseRead: %v", err)
	default:
	}
	r.CloseRead()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked WriteAll after CloseRead: %v, want ErrClosed", err)
	}
	if !r.ReadClosed() {
		t.Fatal("ReadClosed false")
	}
	r.Consume(r.Len())
	if n := r.Write([]byte("x")); n != 0 {
		t.Fatalf("Write after CloseRead = %d", n)
	}
	if r.ArmSpace() {
		t.Fatal("ArmSpace true after CloseRead: the producer would sleep forever")
	}
}

func TestCloseReadWakesBlockedRead(t *testing.T) {
	r := newRing(t, 16)
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 4), time.Now().Add(10*time.Second))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.CloseRead()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Read after CloseRead: %v, want ErrClosed", err)
	}
}

func TestDeadline(t *testing.T) {
	r := newRing(t, 8)
	start := time.Now()
	_, err := r.Read(make([]byte, 1), start.Add(30*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read on empty ring: %v, want ErrDeadlineExceeded", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("Read returned after %v, before its deadline", d)
	}
	// The timed-out reader disarmed: a later write costs no wake byte.
	r.Write([]byte("x"))
	if s := r.Stats(); s.DataWakes != 0 {
		t.Fatalf("DataWakes = %d after a timed-out Read", s.DataWakes)
	}

	_, err = r.writeAll(make([]byte, 20), time.Now().Add(30*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteAll into a full ring: %v, want ErrDeadlineExceeded", err)
	}
	if r.Len() != 8 {
		t.Fatalf("Len = %d, want the ring filled to 8", r.Len())
	}
	if _, err := r.Read(make([]byte, 1), time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("Read with data and a past deadline: %v", err)
	}
}

// The wake byte is written only to an armed side, once per arming.
func TestWakeOnlyWhenArmed(t *testing.T) {
	r := newRing(t, 8)
	r.Write([]byte("a"))
	if s := r.Stats(); s.DataWakes != 0 || readable(t, r.DataFd(), 0) {
		t.Fatalf("unarmed Write woke: %+v", s)
	}
	if r.ArmData() {
		t.Fatal("ArmData true with a byte readable")
	}
	r.Write([]byte("b"))
	if s := r.Stats(); s.DataWakes != 0 {
		t.Fatalf("ArmData that returned false left the flag set: %+v", s)
	}
	r.Consume(2)
	if !r.ArmData() {
		t.Fatal("ArmData false on an empty ring")
	}
	r.Write([]byte("c"))
	r.Write([]byte("d"))
	if s := r.Stats(); s.DataWakes != 1 {
		t.Fatalf("DataWakes = %d after two writes to an armed consumer, want 1", s.DataWakes)
	}
	if !readable(t, r.DataFd(), 0) {
		t.Fatal("DataFd not readable after waking an armed consumer")
	}
	r.DrainData()
	if readable(t, r.DataFd(), 0) {
		t.Fatal("DataFd readable after DrainData")
	}

	// Space, the mirror image.
	r.Write([]byte("efghij")) // full
	r.Consume(1)
	if s := r.Stats(); s.SpaceWakes != 0 || readable(t, r.SpaceFd(), 0) {
		t.Fatalf("unarmed Consume woke: %+v", s)
	}
	if r.ArmSpace() {
		t.Fatal("ArmSpace true with space free")
	}
	r.Write([]byte("k"))
	if !r.ArmSpace() {
		t.Fatal("ArmSpace false on a full ring")
	}
	r.Consume(1)
	r.Consume(1)
	if s := r.Stats(); s.SpaceWakes != 1 {
		t.Fatalf("SpaceWakes = %d, want 1", s.SpaceWakes)
	}
	if !readable(t, r.SpaceFd(), 0) {
		t.Fatal("SpaceFd not readable after waking an armed producer")
	}
	r.DrainSpace()
	if s := r.Stats(); s.Written != 11 || s.Consumed != 5 {
		t.Fatalf("Stats = %+v, want Written 11 Consumed 5", s)
	}
}

// Both halves of the handshake, deterministically: a write just before the
// arm is seen by the re-check, a write just after it (before the consumer
// reaches poll) leaves a byte in the pipe.
func TestArmRace(t *testing.T) {
	r := newRing(t, 8)
	r.Write([]byte("x"))
	if r.ArmData() {
		t.Fatal("write before arm: ArmData true")
	}
	r.Consume(1)
	if !r.ArmData() {
		t.Fatal("ArmData false on empty ring")
	}
	r.Write([]byte("y"))
	if !readable(t, r.DataFd(), 1000) {
		t.Fatal("write between arm and poll: wake lost")
	}
	if !bytes.Equal(r.Readable(), []byte("y")) {
		t.Fatalf("Readable = %q", r.Readable())
	}
	r.DrainData()

	// The same for CloseWrite.
	r.Consume(1)
	if !r.ArmData() {
		t.Fatal("ArmData false on empty ring")
	}
	r.CloseWrite()
	if !readable(t, r.DataFd(), 1000) {
		t.Fatal("CloseWrite between arm and poll: wake lost")
	}
}
