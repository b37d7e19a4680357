package frame

import (
	"bytes"
	"errors"
	"testing"
)

func TestPeekVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		f, err := Split(v.frame)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := Peek(f.Body)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if pk.Type.String() != v.Type {
			t.Fatalf("%s: type %v", v.Name, pk.Type)
		}
		m, _ := Decode(v.frame)
		checkAgreement(t, v.Name, pk, m)
		switch pk.Type {
		case TypeExecStdout, TypeExecStderr, TypeExecStdin:
			want := v.fields.(map[string]any)["data"].(map[string]any)["hex"].(string)
			if !pk.HasData || len(pk.Data)*2 != len(want) {
				t.Fatalf("%s: data %x", v.Name, pk.Data)
			}
			// Data is a view into the body, not a copy.
			if len(pk.Data) > 0 && &pk.Data[len(pk.Data)-1] != &f.Body[len(f.Body)-1] {
				t.Fatalf("%s: data does not alias the body", v.Name)
			}
		case TypeExecRequest:
			if pk.TTY != v.fields.(map[string]any)["tty"].(bool) {
				t.Fatalf("%s: tty %v", v.Name, pk.TTY)
			}
		default:
			if pk.HasData || pk.Data != nil || pk.TTY {
				t.Fatalf("%s: %+v", v.Name, pk)
			}
		}
	}
}

// checkAgreement asserts what FuzzPeek asserts: a successful Peek means the
// full decoder succeeds with the same type, data and tty.
func checkAgreement(t testing.TB, name string, pk Peeked, m Message) {
	t.Helper()
	if m.Type != pk.Type {
		t.Fatalf("%s: Peek type %v, Decode type %v", name, pk.Type, m.Type)
	}
	switch pk.Type {
	case TypeExecStdout, TypeExecStderr, TypeExecStdin:
		var p ExecStdout
		if err := m.Into(&p); err != nil {
			t.Fatalf("%s: Peek found data, Into failed: %v", name, err)
		}
		if !pk.HasData || !bytes.Equal(p.Data, pk.Data) {
			t.Fatalf("%s: Peek data %x, Into data %x", name, pk.Data, p.Data)
		}
	case TypeExecRequest:
		var r ExecRequest
		if err := m.Into(&r); err == nil && r.TTY != pk.TTY {
			t.Fatalf("%s: Peek tty %v, Into tty %v", name, pk.TTY, r.TTY)
		}
	}
}

func TestPeekDoesNotAllocate(t *testing.T) {
	for _, v := range loadVectors(t) {
		body := v.frame[HeaderSize:]
		if n := testing.AllocsPerRun(50, func() {
			if _, err := Peek(body); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("%s: Peek allocates %v times", v.Name, n)
		}
	}
	// Nor on errors.
	bad := cb{}.m(2).t("t").t("core.ready").t("t").t("core.ready")
	if n := testing.AllocsPerRun(50, func() { _, _ = Peek(bad) }); n != 0 {
		t.Fatalf("failing Peek allocates %v times", n)
	}
}

func stdoutBody(payload []byte) cb {
	return cb{}.m(3).t("v").u(1).t("t").t("core.exec.stdout").t("p").b(payload)
}

func TestPeekPayloads(t *testing.T) {
	// Extra payload keys are skipped; data may come last.
	pk, err := Peek(stdoutBody(cb{}.m(3).t("seq").u(9).t("meta").m(1).t("k").a(0).t("data").b([]byte("xyz"))))
	if err != nil || string(pk.Data) != "xyz" || !pk.HasData {
		t.Fatal(pk, err)
	}
	// Empty data (stdin EOF) is present and empty, not absent.
	body := cb{}.m(3).t("v").u(1).t("t").t("core.exec.stdin").t("p").b(cb{}.m(1).t("data").b(nil))
	if pk, err = Peek(body); err != nil || !pk.HasData || pk.Data == nil || len(pk.Data) != 0 {
		t.Fatal(pk, err)
	}
	req := func(p cb) cb { return cb{}.m(3).t("v").u(1).t("t").t("core.exec.request").t("p").b(p) }
	if pk, err = Peek(req(cb{}.m(2).t("cmd").t("sh").t("tty").raw(0xf5))); err != nil || !pk.TTY {
		t.Fatal(pk, err)
	}
	if pk, err = Peek(req(cb{}.m(1).t("cmd").t("sh"))); err != nil || pk.TTY {
		t.Fatal("absent tty:", pk, err)
	}
	// Types Peek does not look into may carry any payload.
	if pk, err = Peek(cb{}.m(2).t("t").t("core.exec.exited").t("p").b([]byte{0xff})); err != nil || pk.Type != TypeExecExited {
		t.Fatal(pk, err)
	}
	for name, body := range map[string]cb{
		"no data":            stdoutBody(cb{}.m(1).t("dat").b(nil)),
		"data is text":       stdoutBody(cb{}.m(1).t("data").t("x")),
		"data is null":       stdoutBody(cb{}.m(1).t("data").raw(0xf6)),
		"repeated data":      stdoutBody(cb{}.m(2).t("data").b(nil).t("data").b([]byte("x"))),
		"repeated other key": stdoutBody(cb{}.m(3).t("a").u(1).t("data").b(nil).t("a").u(1)),
		"empty payload":      stdoutBody(nil),
		"payload trailing":   stdoutBody(cb{}.m(1).t("data").b(nil).u(0)),
		"payload truncated":  stdoutBody(cb{}.m(2).t("data").b(nil)),
		"tty is 1":           req(cb{}.m(2).t("cmd").t("sh").t("tty").u(1)),
		"tty is null":        req(cb{}.m(2).t("cmd").t("sh").t("tty").raw(0xf6)),
		"tty missing value":  req(cb{}.m(1).t("tty")),
	} {
		if pk, err := Peek(body); err == nil {
			t.Errorf("%s: accepted %+v", name, pk)
		}
	}
}

func TestPeekMalformed(t *testing.T) {
	withExtra := func(v cb) cb { return cb{}.m(2).t("t").t("core.ready").t("x").raw(v...) }
	nested := func(depth int) cb {
		var v cb
		for range depth {
			v = v.a(1)
		}
		return v.u(0)
	}
	if _, err := Peek(withExtra(nested(maxPeekDepth - 2))); err != nil {
		t.Fatalf("nesting within the bound: %v", err)
	}
	cases := map[string]cb{
		"nested too deep":         withExtra(nested(maxPeekDepth)),
		"very deep":               withExtra(nested(100000)),
		"tag":                     withExtra(cb{}.raw(0xc0).t("2024")),
		"indefinite array":        withExtra(cb{}.raw(0x9f, 0xff)),
		"indefinite bytes":        withExtra(cb{}.raw(0x5f, 0x41, 0, 0xff)),
		"break":                   withExtra(cb{}.raw(0xff)),
		"reserved ai":             withExtra(cb{}.raw(0x1c)),
		"simple 0":                withExtra(cb{}.raw(0xe0)),
		"simple 255":              withExtra(cb{}.raw(0xf8, 0xff)),
		"huge array count":        withExtra(cb{}.a(1 << 40)),
		"array over decoder max":  withExtra(cb{}.a(maxContainerSize + 1)),
		"string past end":         withExtra(cb{}.head(majorBytes, 1<<62)),
		"string length overflows": withExtra(cb{}.raw(0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
		"truncated head":          withExtra(cb{}.raw(0x19, 0x01)),
		"missing value":           cb{}.m(2).t("t").t("core.ready").t("x"),
		"int key":                 cb{}.m(2).t("t").t("core.ready").u(1).u(1),
		"too many keys":           cb{}.m(maxPeekKeys + 1),
		"invalid utf-8 key":       cb{}.m(2).t("t").t("core.ready").raw(0x61, 0xff).u(0),
		"float version":           cb{}.m(2).t("v").raw(0xf9, 0x3c, 0x00).t("t").t("core.ready"),
		"empty":                   {},
	}
	for name, body := range cases {
		if _, err := Peek(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Values nobody reads may be floats, null, undefined, negative ints
	// and text that is not UTF-8: the full decoder skips them too.
	ok := cb{}.m(6).t("t").t("core.ready").t("a").raw(0xf9, 0, 0).t("b").raw(0xf7).
		t("c").raw(0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).t("d").raw(0x61, 0xff).t("e").m(1).u(1).raw(0xf6)
	pk, err := Peek(ok)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(frameOf(ok))
	if err != nil {
		t.Fatalf("Peek accepted what Decode rejects: %v", err)
	}
	checkAgreement(t, "skipped values", pk, m)
}

func TestPeekNeverReadsPastBody(t *testing.T) {
	for _, fr := range smallVectors(t) {
		body := fr[HeaderSize:]
		// Each strict prefix is a view whose capacity still holds the rest
		// of the valid body: reading past len would make it parse.
		for k := range len(body) {
			if pk, err := Peek(body[:k]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%x: prefix %d peeked as %+v, %v", body, k, pk, err)
			}
		}
	}
}

func TestPeekRepeatedKeysInSkippedValues(t *testing.T) {
	// The full decoder checks repeats only in the maps it decodes into
	// structs; inside skipped values it does not, and neither does Peek.
	body := cb{}.m(2).t("t").t("core.ready").t("x").m(2).t("k").u(1).t("k").u(2)
	pk, err := Peek(body)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(frameOf(body))
	if err != nil {
		t.Fatal(err)
	}
	checkAgreement(t, "nested repeat", pk, m)
}

// TestPeekLaterTypes: the types added after 0.4.4 peek to their type and
// generation and carry no data; types newer than this package (generation
// 8 and later) peek to TypeUnknown without error, whatever their payload,
// so that a relay forwards them.
func TestPeekLaterTypes(t *testing.T) {
	for _, v := range loadVectors(t) {
		ty := ParseType([]byte(v.Type))
		if ty < TypeExecStdinError {
			continue
		}
		f, err := Split(v.frame)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := Peek(f.Body)
		if err != nil || pk.Type != ty || pk.Version != v.v || pk.HasData || pk.Data != nil || pk.TTY {
			t.Fatalf("%s: %+v %v", v.Name, pk, err)
		}
	}
	for name, body := range map[string]cb{
		"bulk credit":     cb{}.m(3).t("v").u(8).t("t").t("core.bulk.credit").t("p").b(cb{}.m(1).t("limit").u(1 << 20)),
		"workload freeze": cb{}.m(3).t("v").u(9).t("t").t("core.workload.freeze").t("p").b(cb{}.a(2).u(1).t("x")),
		"payload not map": cb{}.m(3).t("v").u(7).t("t").t("core.future").t("p").b([]byte{0xff, 0x00}),
		"no payload":      cb{}.m(2).t("v").u(7).t("t").t("core.future"),
		"tcp data":        cb{}.m(3).t("v").u(4).t("t").t("core.tcp.data").t("p").b([]byte{0x01}),
	} {
		pk, err := Peek(body)
		if err != nil || pk.HasData || pk.Data != nil {
			t.Errorf("%s: %+v %v", name, pk, err)
		}
		if m, err := DecodeFrame(Frame{Body: body}); err != nil || m.Type != pk.Type {
			t.Errorf("%s: Decode %+v %v", name, m, err)
		}
	}
	if pk, _ := Peek(cb{}.m(2).t("v").u(9).t("t").t("core.bulk.credit")); pk.Type != TypeUnknown || pk.Version != 9 {
		t.Errorf("generation 9 type: %+v", pk)
	}
}
