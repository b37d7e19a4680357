package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func header(l, id uint32, flags uint8) []byte {
	b := binary.BigEndian.AppendUint32(nil, l)
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, flags)
}

func TestLen(t *testing.T) {
	for _, c := range []struct {
		prefix []byte
		n      int
		err    error
	}{
		{nil, 0, ErrIncomplete},
		{[]byte{0, 0, 0}, 0, ErrIncomplete},
		{[]byte{0, 0, 0, 0}, 0, ErrTooShort},
		{[]byte{0, 0, 0, 4}, 0, ErrTooShort},
		{[]byte{0, 0, 0, 5}, 9, nil},
		{[]byte{0, 0x40, 0, 0}, MaxFrame, nil},
		{[]byte{0, 0x40, 0, 1}, 0, ErrTooLarge},
		{[]byte{0xff, 0xff, 0xff, 0xff}, 0, ErrTooLarge},
	} {
		n, err := Len(c.prefix)
		if n != c.n || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("Len(%x) = %d, %v; want %d, %v", c.prefix, n, err, c.n, c.err)
		}
	}
}

func TestLengthErrorCarriesLength(t *testing.T) {
	_, err := Split([]byte{0, 0, 0, 3, 1, 2, 3})
	var le *LengthError
	if !errors.As(err, &le) || le.Len != 3 || le.Limit != MinLen || !errors.Is(err, ErrTooShort) || errors.Is(err, ErrTooLarge) {
		t.Fatalf("too short: %v", err)
	}
	_, err = Split([]byte{0x12, 0x34, 0x56, 0x78})
	if !errors.As(err, &le) || le.Len != 0x12345678 || le.Limit != MaxLen || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if le.Error() != "frame: len 305419896 is too large (maximum 4194304)" {
		t.Fatalf("message %q", le.Error())
	}
}

func TestSplitVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		// Every strict prefix is incomplete (or, under 4 bytes, unknown).
		for k := range len(v.frame) {
			if _, err := Split(v.frame[:k]); err != ErrIncomplete {
				t.Fatalf("%s: prefix %d: %v", v.Name, k, err)
			}
		}
		// The frame is found in front of whatever follows it.
		buf := append(append([]byte{}, v.frame...), 0xde, 0xad)
		f, err := Split(buf)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if f.ID != v.ID || f.Flags != v.Flags || !bytes.Equal(f.Raw, v.frame) || !bytes.Equal(f.Body, v.frame[HeaderSize:]) {
			t.Fatalf("%s: got %+v", v.Name, f)
		}
		if &f.Raw[0] != &buf[0] || &f.Body[0] != &buf[HeaderSize] {
			t.Fatalf("%s: frame does not alias the buffer", v.Name)
		}
		// Appending to a view must not overwrite the next frame's bytes.
		_ = append(f.Body, 0x00)
		_ = append(f.Raw, 0x00)
		if buf[len(v.frame)] != 0xde {
			t.Fatalf("%s: view capacity not clipped", v.Name)
		}
	}
}

func TestSplitEmptyBody(t *testing.T) {
	f, err := Split(header(5, 7, FlagTerminal))
	if err != nil || f.ID != 7 || f.Flags != FlagTerminal || len(f.Body) != 0 || len(f.Raw) != 9 {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestSplitReportsBadLengthEarly(t *testing.T) {
	// A bad length is known from the prefix alone: no need to wait for
	// 4 MiB of data that will never make a frame.
	if _, err := Split([]byte{0, 0x50, 0, 0}); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
	if _, err := Split([]byte{0, 0, 0, 1}); !errors.Is(err, ErrTooShort) {
		t.Fatal(err)
	}
}

func TestAppendFrame(t *testing.T) {
	got := AppendFrame([]byte{0xaa}, 0x01020304, FlagSessionStart, []byte("body"))
	want := append([]byte{0xaa, 0, 0, 0, 9, 1, 2, 3, 4, 2}, "body"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("%x", got)
	}
	for _, v := range loadVectors(t) {
		f, _ := Split(v.frame)
		if got := AppendFrame(nil, f.ID, f.Flags, f.Body); !bytes.Equal(got, v.frame) {
			t.Fatalf("%s: %x", v.Name, got)
		}
	}
}

func TestSplitDoesNotAllocate(t *testing.T) {
	v := loadVectors(t)[0]
	if n := testing.AllocsPerRun(100, func() {
		if _, err := Split(v.frame); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Split allocates %v times", n)
	}
}
