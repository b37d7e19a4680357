package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"
)

// smallVectors returns the vector frames up to 4 KiB, as fuzz seeds.
func smallVectors(tb testing.TB) [][]byte {
	var out [][]byte
	for _, v := range loadVectors(tb) {
		if len(v.frame) <= 4096 {
			out = append(out, v.frame)
		}
	}
	return out
}

func FuzzSplit(f *testing.F) {
	for _, fr := range smallVectors(f) {
		f.Add(fr)
		f.Add(fr[:len(fr)-1])
		f.Add(append(append([]byte{}, fr...), fr[:7]...))
	}
	f.Add([]byte{0, 0, 0, 4, 1, 2, 3, 4})
	f.Add([]byte{0, 0x40, 0, 1})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Split(data)
		n, lerr := Len(data)
		switch {
		case lerr != nil:
			if err != lerr && err.Error() != lerr.Error() {
				t.Fatalf("Split %v, Len %v", err, lerr)
			}
			if len(data) < LenSize != (lerr == ErrIncomplete) {
				t.Fatalf("%d bytes: %v", len(data), lerr)
			}
			if lerr != ErrIncomplete && !errors.Is(lerr, ErrTooShort) && !errors.Is(lerr, ErrTooLarge) {
				t.Fatalf("unexpected error %v", lerr)
			}
		case n > len(data):
			if err != ErrIncomplete {
				t.Fatalf("%d of %d bytes: %v", len(data), n, err)
			}
		default:
			if err != nil || len(fr.Raw) != n || n < HeaderSize || n > MaxFrame {
				t.Fatalf("len %d: %+v %v", n, fr, err)
			}
			if !bytes.Equal(AppendFrame(nil, fr.ID, fr.Flags, fr.Body), data[:n]) {
				t.Fatal("frame fields do not rebuild the frame")
			}
		}
	})
}

// scanWhole is the Scanner's specification: Split over the whole input,
// with frames above the buffer's size reported as too large.
func scanWhole(data []byte, size int) (frames [][]byte, err error) {
	for off := 0; ; {
		n, err := Len(data[off:])
		if err != nil {
			return frames, err
		}
		if n > size {
			return frames, ErrTooLarge
		}
		if off+n > len(data) {
			return frames, ErrIncomplete
		}
		frames = append(frames, data[off:off+n])
		off += n
	}
}

// scanChunked feeds data to a Scanner in chunks chosen by seed.
func scanChunked(t *testing.T, data []byte, size int, seed uint64) (frames [][]byte, err error) {
	s := NewScanner(size)
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	maxChunk := 1 + int(seed%97)
	for rest := data; ; {
		if len(rest) > 0 {
			chunk := rest[:min(len(rest), 1+rng.IntN(maxChunk))]
			var n int
			if rng.IntN(2) == 0 {
				n = copy(s.Space(), chunk)
				s.Commit(n)
			} else {
				n, _ = s.Write(chunk)
			}
			rest = rest[n:]
		}
		for {
			f, err := s.Next()
			if err == ErrIncomplete {
				break
			}
			if err != nil {
				return frames, err
			}
			frames = append(frames, bytes.Clone(f.Raw))
		}
		if len(rest) == 0 {
			return frames, ErrIncomplete
		}
		if len(s.Space()) == 0 {
			t.Fatalf("scanner full and stuck with %d bytes", s.Buffered())
		}
	}
}

func FuzzScanner(f *testing.F) {
	var stream []byte
	for _, fr := range smallVectors(f) {
		stream = append(stream, fr...)
	}
	f.Add(stream, uint64(1), uint16(4096))
	f.Add(stream[:500], uint64(7), uint16(0))
	f.Add(append(stream[:300:300], 0, 0, 0, 1), uint64(3), uint16(100))
	f.Add(append(stream[:300:300], 0xff, 0, 0, 1), uint64(99), uint16(9))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, size uint16) {
		bufSize := HeaderSize + int(size)
		want, werr := scanWhole(data, bufSize)
		got, gerr := scanChunked(t, data, bufSize, seed)
		if len(got) != len(want) {
			t.Fatalf("chunked: %d frames, whole: %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
		for _, target := range []error{ErrIncomplete, ErrTooShort, ErrTooLarge} {
			if errors.Is(gerr, target) != errors.Is(werr, target) {
				t.Fatalf("chunked ends with %v, whole with %v", gerr, werr)
			}
		}
	})
}

// within reports whether sub lies inside b.
func within(sub, b []byte) bool {
	if len(sub) == 0 {
		return true
	}
	s, e := uintptr(unsafe.Pointer(unsafe.SliceData(sub))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return s >= e && s+uintptr(len(sub)) <= e+uintptr(len(b))
}

// canonical re-encodes a decoded message the way this package writes it,
// payload included for the types Peek looks into. ok is false when the
// payload does not decode or the result is too large.
func canonical(m Message) (body []byte, ok bool) {
	var raw []byte
	var err error
	switch m.Type {
	case TypeExecStdout, TypeExecStderr, TypeExecStdin:
		var p ExecStdout
		if m.Into(&p) != nil {
			return nil, false
		}
		raw, err = AppendMessage(nil, m.ID, m.Type, p)
	case TypeExecRequest:
		var p ExecRequest
		if m.Into(&p) != nil {
			return nil, false
		}
		raw, err = AppendMessage(nil, m.ID, m.Type, p)
	default:
		raw, err = m.Append(nil)
	}
	if err != nil {
		return nil, false
	}
	return raw[HeaderSize:], true
}

// FuzzPeek checks Peek against the full decoder:
//   - Peek never panics and returns views into the body;
//   - if Peek succeeds, Decode succeeds with the same type, and for
//     stdin/stdout/stderr Into succeeds with the same data; for an exec
//     request whose payload Into accepts, the tty flags agree;
//   - if Decode succeeds, Peek succeeds on the canonical re-encoding (our
//     encoder's bytes for the same message) and agrees with it. Peek may
//     reject other forms Decode accepts: indefinite lengths, tags, repeated
//     keys inside skipped values, nesting beyond maxPeekDepth.
func FuzzPeek(f *testing.F) {
	for _, fr := range smallVectors(f) {
		f.Add(fr[HeaderSize:])
	}
	f.Add([]byte(cb{}.m(3).t("p").b(cb{}.m(2).t("x").a(1).raw(0xf6).t("data").b([]byte("hi"))).t("t").t("core.exec.stderr").t("v").u(1)))
	f.Add([]byte(cb{}.m(2).t("t").t("core.exec.request").t("p").b(cb{}.m(2).t("cmd").t("sh").t("tty").raw(0xf5))))
	f.Add([]byte(cb{}.m(2).t("t").t("core.ready").t("x").raw(0x9f, 0xbf, 0xff, 0xff)))
	f.Add([]byte(cb{}.m(2).t("t").t("core.ready").t("x").raw(0xc1, 0x1a, 0, 0, 0, 0)))
	f.Fuzz(func(t *testing.T, body []byte) {
		pk, perr := Peek(body)
		m, derr := DecodeFrame(Frame{ID: 1, Body: body})
		if perr == nil {
			if derr != nil {
				t.Fatalf("Peek accepted (%+v), Decode failed: %v", pk, derr)
			}
			if !within(pk.Data, body) {
				t.Fatal("Peek data is not a view into the body")
			}
			checkAgreement(t, "input", pk, m)
		} else if !errors.Is(perr, ErrMalformed) && perr != errNoType {
			t.Fatalf("Peek error %v is not ErrMalformed", perr)
		}
		if derr != nil {
			return
		}
		cbody, ok := canonical(m)
		if !ok {
			return
		}
		cpk, err := Peek(cbody)
		if err != nil {
			t.Fatalf("Decode accepted, Peek rejects its canonical form %x: %v", cbody, err)
		}
		cm, err := DecodeFrame(Frame{ID: 1, Body: cbody})
		if err != nil {
			t.Fatalf("canonical form does not decode: %v", err)
		}
		checkAgreement(t, "canonical", cpk, cm)
		if cpk.Type != m.Type {
			t.Fatalf("canonical type %v, original %v", cpk.Type, m.Type)
		}
		if perr == nil && (pk.TTY != cpk.TTY || !bytes.Equal(pk.Data, cpk.Data)) {
			t.Fatalf("Peek differs on the canonical form: %+v vs %+v", pk, cpk)
		}
	})
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// re-encodes to a frame that decodes to the same message, and that decoded
// payloads re-encode stably.
func FuzzDecode(f *testing.F) {
	for _, fr := range smallVectors(f) {
		f.Add(fr)
	}
	f.Add(frameOf(cb{}.m(2).t("t").t("core.fs.request").t("p").b(cb{}.m(1).t("op").m(1).t("Write").m(1).t("path").t("/x"))))
	f.Add(frameOf(cb{}.m(2).t("t").t("core.fs.response").t("p").b(cb{}.m(1).t("data").m(1).t("List").a(0))))
	f.Add(frameOf(cb{}.m(2).t("t").t("core.exec.request").t("p").b(cb{}.m(1).t("cmd").t("x"))))
	// Later generations: optional fields absent, null or unknown, and a
	// type newer than the package.
	f.Add(frameOf(cb{}.m(3).t("v").u(7).t("t").t("core.exec.stdin.error").t("p").b(cb{}.m(1).t("message").t("x"))))
	f.Add(frameOf(cb{}.m(3).t("v").u(5).t("t").t("core.error").t("p").b(cb{}.m(3).t("kind").t("invalid_flags").t("message").t("m").t("offending_type").raw(0xf6))))
	f.Add(frameOf(cb{}.m(3).t("v").u(7).t("t").t("core.ready").t("p").b(cb{}.m(2).t("boot_time_ns").u(1).t("agent_version").t("0.6.14"))))
	f.Add(frameOf(cb{}.m(3).t("v").u(8).t("t").t("core.tcp.connect").t("p").b(cb{}.m(3).t("host").t("h").t("port").u(80).t("bulk").m(0))))
	f.Add(frameOf(cb{}.m(3).t("v").u(2).t("t").t("core.relay.client.disconnected").t("p").b(cb{}.m(2).t("id_start").u(1).t("id_end_exclusive").u(33554431))))
	f.Add(frameOf(cb{}.m(3).t("v").u(7).t("t").t("core.init.ack").t("p").b(cb{}.m(0))))
	f.Add(frameOf(cb{}.m(3).t("v").u(9).t("t").t("core.workload.freeze").t("p").b(cb{}.m(0))))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Decode(raw)
		if err != nil {
			return
		}
		enc, err := m.Append(nil)
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if m2.ID != m.ID || m2.Flags != m.Flags || m2.Type != m.Type || m2.TypeName != m.TypeName ||
			m2.Version != m.Version || !bytes.Equal(m2.Payload, m.Payload) {
			t.Fatalf("round trip: %+v -> %+v", m, m2)
		}
		pt, ok := payloadTypes[m.Type]
		if !ok {
			return
		}
		p := reflect.New(pt)
		if m.Into(p.Interface()) != nil {
			return
		}
		frame1, err := AppendMessage(nil, m.ID, m.Type, p.Interface())
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatalf("decoded payload does not encode: %v", err)
		}
		d1, err := Decode(frame1)
		if err != nil {
			t.Fatal(err)
		}
		p2 := reflect.New(pt)
		if err := d1.Into(p2.Interface()); err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		frame2, err := AppendMessage(nil, m.ID, m.Type, p2.Interface())
		if err != nil || !bytes.Equal(frame1, frame2) {
			t.Fatalf("payload encoding not stable: %x vs %x (%v)", frame1, frame2, err)
		}
	})
}
