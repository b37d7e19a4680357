package frame

import (
	"fmt"
	"testing"
)

func stdoutFrame(b *testing.B, n int) []byte {
	raw, err := AppendMessage(nil, 1, TypeExecStdout, ExecStdout{Data: make([]byte, n)})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

var sizes = []int{64, 64 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("stdout-%dKiB", n>>10)
	}
	return fmt.Sprintf("stdout-%dB", n)
}

func BenchmarkPeek(b *testing.B) {
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			body := stdoutFrame(b, n)[HeaderSize:]
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				pk, err := Peek(body)
				if err != nil || len(pk.Data) != n {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("exec-request", func(b *testing.B) {
		cwd := "/home/user"
		raw, _ := AppendMessage(nil, 1, TypeExecRequest, ExecRequest{
			Cmd: "/bin/sh", Args: []string{"-c", "ls -la"}, Env: []string{"PATH=/bin", "TERM=xterm"},
			Cwd: &cwd, TTY: true, Rows: 24, Cols: 80, Rlimits: []Rlimit{{"nofile", 1024, 4096}},
		})
		body := raw[HeaderSize:]
		b.ReportAllocs()
		for b.Loop() {
			if pk, err := Peek(body); err != nil || !pk.TTY {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSplit(b *testing.B) {
	var stream []byte
	frames := 0
	for _, fr := range smallVectors(b) {
		stream = append(stream, fr...)
		frames++
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for rest := stream; len(rest) > 0; n++ {
			f, err := Split(rest)
			if err != nil {
				b.Fatal(err)
			}
			rest = rest[len(f.Raw):]
		}
		if n != frames {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}

func BenchmarkScanner(b *testing.B) {
	var stream []byte
	for _, fr := range smallVectors(b) {
		stream = append(stream, fr...)
	}
	s := NewScanner(0)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for rest := stream; len(rest) > 0; {
			k := copy(s.Space(), rest[:min(1500, len(rest))])
			s.Commit(k)
			rest = rest[k:]
			for {
				if _, err := s.Next(); err != nil {
					break
				}
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			raw := stdoutFrame(b, n)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := Decode(raw)
				if err != nil {
					b.Fatal(err)
				}
				var p ExecStdout
				if err := m.Into(&p); err != nil || len(p.Data) != n {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("exec-request-full", func(b *testing.B) {
		var raw []byte
		for _, v := range loadVectors(b) {
			if v.Name == "exec_request_full" {
				raw = v.frame
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			m, err := Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			var r ExecRequest
			if err := m.Into(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendMessage(b *testing.B) {
	for _, n := range sizes {
		b.Run(sizeName(n), func(b *testing.B) {
			p := &ExecStdout{Data: make([]byte, n)}
			buf := make([]byte, 0, n+64)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendMessage(buf[:0], 1, TypeExecStdout, p)
			}
		})
	}
	b.Run("exec-exited", func(b *testing.B) {
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = AppendMessage(buf[:0], 1, TypeExecExited, ExecExited{Code: 1})
		}
	})
}
