package frame

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeEnvelopeKeyOrderAndUnknownKeys(t *testing.T) {
	payload := cb{}.m(1).t("data").b([]byte("hi"))
	bodies := map[string]cb{
		"p,t,v": cb{}.m(3).t("p").b(payload).t("t").t("core.exec.stdout").t("v").u(1),
		"unknown keys of every kind": cb{}.m(6).t("x").m(1).t("y").a(2).u(1).raw(0xf6).
			t("t").t("core.exec.stdout").t("zz").raw(0xfb, 0, 0, 0, 0, 0, 0, 0, 0).
			t("v").u(1).t("p").b(payload).t("T").t("core.ready"),
		"non-minimal version": cb{}.m(3).t("v").raw(0x18, 0x01).t("t").t("core.exec.stdout").t("p").b(payload),
	}
	for name, body := range bodies {
		m, err := Decode(frameOf(body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Type != TypeExecStdout || m.Version != 1 || !bytes.Equal(m.Payload, payload) || m.ID != 42 {
			t.Fatalf("%s: %+v", name, m)
		}
		pk, err := Peek(body)
		if err != nil || pk.Type != TypeExecStdout || string(pk.Data) != "hi" {
			t.Fatalf("%s: Peek %+v %v", name, pk, err)
		}
	}
}

func TestDecodeUnknownTypeRoundTrips(t *testing.T) {
	body := cb{}.m(3).t("v").u(7).t("t").t("core.future.thing").t("p").b([]byte{0xa0})
	raw := AppendFrame(nil, 5, 0x80, body)
	m, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeUnknown || m.TypeName != "core.future.thing" || m.Version != 7 || m.Flags != 0x80 {
		t.Fatalf("%+v", m)
	}
	again, err := m.Append(nil)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("%x %v", again, err)
	}
	if pk, err := Peek(body); err != nil || pk.Type != TypeUnknown {
		t.Fatal(pk, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	ok := cb{}.m(3).t("v").u(1).t("t").t("core.ready").t("p").b(nil)
	if _, err := Decode(frameOf(ok)); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]cb{
		"empty body":       {},
		"not a map":        cb{}.a(0),
		"no type":          cb{}.m(2).t("v").u(1).t("p").b(nil),
		"empty type":       cb{}.m(2).t("v").u(1).t("t").t(""),
		"repeated t":       cb{}.m(3).t("t").t("core.ready").t("v").u(1).t("t").t("core.shutdown"),
		"repeated unknown": cb{}.m(3).t("t").t("core.ready").t("x").u(1).t("x").u(2),
		"t is bytes":       cb{}.m(2).t("v").u(1).t("t").b([]byte("core.ready")),
		"v negative":       cb{}.m(2).t("v").raw(0x20).t("t").t("core.ready"),
		"p is text":        cb{}.m(2).t("p").t("x").t("t").t("core.ready"),
		"trailing item":    append(append(cb{}, ok...), 0x00),
		"truncated":        ok[:len(ok)-3],
		"invalid utf-8 t":  cb{}.m(1).t("t").raw(0x62, 0xc3, 0x28),
	} {
		if m, err := Decode(frameOf(body)); err == nil {
			t.Errorf("%s: decoded %+v", name, m)
		}
		if pk, err := Peek(body); err == nil {
			t.Errorf("%s: Peek accepted: %+v", name, pk)
		} else if !errors.Is(err, ErrMalformed) && name != "no type" && name != "empty type" {
			t.Errorf("%s: Peek error %v is not ErrMalformed", name, err)
		}
	}
	good := frameOf(ok)
	if _, err := Decode(append(good, 0)); err == nil || !strings.Contains(err.Error(), "after the frame") {
		t.Errorf("trailing byte: %v", err)
	}
	if _, err := Decode(good[:len(good)-1]); err != ErrIncomplete {
		t.Errorf("short frame: %v", err)
	}
}

func TestExecRequestDefaults(t *testing.T) {
	m := Message{TypeName: "core.exec.request", Payload: cb{}.m(1).t("cmd").t("true")}
	var r ExecRequest
	if err := m.Into(&r); err != nil {
		t.Fatal(err)
	}
	want := ExecRequest{Cmd: "true", Rows: DefaultRows, Cols: DefaultCols}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("%+v", r)
	}
	// Explicit values win over defaults, null keeps the default, and
	// unknown keys are skipped.
	m.Payload = cb{}.m(5).t("future").a(1).u(3).t("rows").u(0).t("cols").raw(0xf6).t("cmd").t("sh").t("tty").raw(0xf5)
	if err := m.Into(&r); err != nil {
		t.Fatal(err)
	}
	if r.Rows != 0 || r.Cols != DefaultCols || !r.TTY || r.Cmd != "sh" {
		t.Fatalf("%+v", r)
	}
	for name, p := range map[string]cb{
		"no cmd":       cb{}.m(1).t("tty").raw(0xf5),
		"null cmd":     cb{}.m(1).t("cmd").raw(0xf6),
		"rows too big": cb{}.m(2).t("cmd").t("x").t("rows").u(65536),
		"args of ints": cb{}.m(2).t("cmd").t("x").t("args").a(1).u(1),
		"case differs": cb{}.m(1).t("Cmd").t("x"),
		"empty":        {},
	} {
		m.Payload = p
		if err := m.Into(&ExecRequest{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFsOpCodec(t *testing.T) {
	mode := uint32(0o600)
	for _, op := range []FsOp{
		{Kind: FsStat, Path: "/a"}, {Kind: FsList, Path: "/"}, {Kind: FsRead, Path: "/r"},
		{Kind: FsWrite, Path: "/w"}, {Kind: FsWrite, Path: "/w", Mode: &mode},
		{Kind: FsMkdir, Path: "/m"}, {Kind: FsRemove, Path: "/x"}, {Kind: FsRemoveDir, Path: "/d"},
		{Kind: FsCopy, Src: "/s", Dst: "/d"}, {Kind: FsRename, Src: "/s", Dst: "/d"},
	} {
		raw, err := AppendMessage(nil, 3, TypeFsRequest, FsRequest{Op: op})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(raw)
		if err != nil || m.Flags != FlagSessionStart {
			t.Fatal(m, err)
		}
		var got FsRequest
		if err := m.Into(&got); err != nil || !reflect.DeepEqual(got.Op, op) {
			t.Fatalf("%v: %+v %v", op.Kind, got.Op, err)
		}
	}
	if _, err := AppendMessage(nil, 1, TypeFsRequest, FsRequest{}); err == nil {
		t.Error("op without kind encoded")
	}
	for name, p := range map[string]cb{
		"two keys":     cb{}.m(1).t("op").m(2).t("Stat").m(1).t("path").t("/").t("List").m(1).t("path").t("/"),
		"no keys":      cb{}.m(1).t("op").m(0),
		"unknown op":   cb{}.m(1).t("op").m(1).t("Chmod").m(1).t("path").t("/"),
		"missing path": cb{}.m(1).t("op").m(1).t("Stat").m(0),
		"missing dst":  cb{}.m(1).t("op").m(1).t("Copy").m(1).t("src").t("/"),
		"string op":    cb{}.m(1).t("op").t("Stat"),
		"null op":      cb{}.m(1).t("op").raw(0xf6),
		"no op":        cb{}.m(1).raw(0x39, 0x30, 0x30).m(0),
	} {
		if err := (Message{Payload: p}).Into(&FsRequest{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFsResultCodec(t *testing.T) {
	mod := int64(-5)
	for _, r := range []*FsResult{
		nil,
		{Stat: &FsEntry{Path: "/a", Kind: "file", Size: 1, Mode: 2, Modified: &mod}},
		{List: []FsEntry{}},
		{List: []FsEntry{{Path: "/b", Kind: "dir"}}},
	} {
		in := FsResponse{OK: true, Data: r}
		raw, err := AppendMessage(nil, 3, TypeFsResponse, &in)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := Decode(raw)
		var out FsResponse
		if err := m.Into(&out); err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("%+v -> %+v %v", in, out, err)
		}
	}
	// A nil List encodes as an empty List, which decodes non-nil.
	raw, _ := AppendMessage(nil, 3, TypeFsResponse, FsResponse{Data: &FsResult{}})
	m, _ := Decode(raw)
	var out FsResponse
	if err := m.Into(&out); err != nil || out.Data == nil || out.Data.List == nil || out.Data.Stat != nil {
		t.Fatalf("%+v %v", out.Data, err)
	}
	if err := (Message{Payload: cb{}.m(1).t("data").m(1).t("Tree").a(0)}).Into(&FsResponse{}); err == nil {
		t.Error("unknown result variant accepted")
	}
}

func TestAppendMessageErrors(t *testing.T) {
	dst := []byte("x")
	if got, err := AppendMessage(dst, 1, TypeUnknown, nil); err == nil || !bytes.Equal(got, dst) {
		t.Error("TypeUnknown encoded")
	}
	if got, err := AppendMessage(dst, 1, TypeReady, make(chan int)); err == nil || !bytes.Equal(got, dst) {
		t.Error("unencodable payload encoded")
	}
	got, err := AppendMessage(dst, 1, TypeFsData, FsData{Data: make([]byte, MaxLen)})
	if !errors.Is(err, ErrTooLarge) || !bytes.Equal(got, dst) {
		t.Errorf("oversized frame: %v", err)
	}
	// The largest data that fits makes a frame of exactly MaxFrame bytes.
	// id+flags 5, map 1, "v" 2+1, "t" 2+1+12, "p" 2+5, {"data": 6, head 5.
	over := MaxLen - (5 + 1 + 3 + 15 + 7 + 6 + 5)
	got, err = AppendMessage(nil, 1, TypeFsData, FsData{Data: make([]byte, over)})
	if err != nil || len(got) != MaxFrame {
		t.Errorf("max frame: len %d, %v", len(got), err)
	}
	if _, err := (Message{}).Append(nil); err == nil {
		t.Error("message without type encoded")
	}
}

func TestAppendMessageDataPathMatchesCodec(t *testing.T) {
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536} {
		data := bytes.Repeat([]byte{7}, n)
		fast, err := AppendMessage(nil, 9, TypeExecStdout, ExecStdout{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := encMode.Marshal(ExecStdout{Data: data})
		slow := (Message{ID: 9, Type: TypeExecStdout, Version: Version, Payload: enc})
		want, _ := slow.Append(nil)
		if !bytes.Equal(fast, want) {
			t.Fatalf("%d bytes: fast path differs", n)
		}
	}
}

func TestAppendDataMessageDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1<<16)
	data := make([]byte, 1000)
	p := &ExecStdout{Data: data}
	if n := testing.AllocsPerRun(100, func() {
		var err error
		if buf, err = AppendMessage(buf[:0], 1, TypeExecStdout, p); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("AppendMessage(ExecStdout) allocates %v times", n)
	}
}
