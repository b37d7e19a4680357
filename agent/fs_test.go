package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// fsCall sends one fs request and returns the data chunks and the response.
func fsCall(t *testing.T, h *testHost, id uint32, op frame.FsOp, data ...[]byte) ([]byte, frame.FsResponse) {
	t.Helper()
	h.send(id, frame.TypeFsRequest, &frame.FsRequest{Op: op})
	for _, d := range data {
		h.send(id, frame.TypeFsData, frame.FsData{Data: d})
	}
	var got []byte
	for {
		m := h.next(10 * time.Second)
		if m.ID != id {
			t.Fatalf("message for id %d, want %d", m.ID, id)
		}
		switch m.Type {
		case frame.TypeFsData:
			var p frame.FsData
			mustInto(t, m, &p)
			if len(p.Data) == 0 || len(p.Data) > 3<<20 {
				t.Fatalf("fs.data chunk of %d bytes", len(p.Data))
			}
			got = append(got, p.Data...)
		case frame.TypeFsResponse:
			if m.Flags != frame.FlagTerminal {
				t.Fatalf("fs.response flags %#x", m.Flags)
			}
			var r frame.FsResponse
			mustInto(t, m, &r)
			return got, r
		default:
			t.Fatalf("unexpected %v", m.TypeName)
		}
	}
}

func wantOK(t *testing.T, r frame.FsResponse) {
	t.Helper()
	if !r.OK || r.Error != nil {
		t.Fatalf("response %+v (error %v)", r, deref(r.Error))
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestAgentFs(t *testing.T) {
	dir := t.TempDir()
	h := startAgent(t, 4<<10, Options{}) // small ring: chunks wait for space
	id := uint32(1000)
	next := func() uint32 { id++; return id }

	// Write in three chunks with a mode, then Read it back.
	content := bytes.Repeat([]byte("agentrelay fs "), 200000) // 2.8 MB: several read chunks
	path := filepath.Join(dir, "sub", "file.txt")
	_, r := fsCall(t, h, next(), frame.FsOp{Kind: frame.FsMkdir, Path: filepath.Dir(path)})
	wantOK(t, r)
	mode := uint32(0o640)
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsWrite, Path: path, Mode: &mode},
		content[:1000], content[1000:1<<20], content[1<<20:], nil)
	wantOK(t, r)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("written file: %v %v", fi, err)
	}
	got, r := fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRead, Path: path})
	wantOK(t, r)
	if !bytes.Equal(got, content) {
		t.Fatalf("read %d bytes, want %d", len(got), len(content))
	}

	// Stat and List.
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsStat, Path: path})
	wantOK(t, r)
	if r.Data == nil || r.Data.Stat == nil {
		t.Fatalf("Stat data %+v", r.Data)
	}
	if e := r.Data.Stat; e.Kind != "file" || e.Size != uint64(len(content)) || e.Mode != 0o100640 || e.Path != path || e.Modified == nil {
		t.Fatalf("Stat entry %+v", *e)
	}
	os.Symlink("file.txt", filepath.Join(dir, "sub", "link"))
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsList, Path: filepath.Dir(path)})
	wantOK(t, r)
	if r.Data == nil || len(r.Data.List) != 2 {
		t.Fatalf("List data %+v", r.Data)
	}
	kinds := map[string]string{}
	for _, e := range r.Data.List {
		kinds[filepath.Base(e.Path)] = e.Kind
	}
	if kinds["file.txt"] != "file" || kinds["link"] != "symlink" {
		t.Fatalf("List kinds %v", kinds)
	}

	// Copy, Rename, Remove, RemoveDir.
	cp := filepath.Join(dir, "copy.txt")
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsCopy, Src: path, Dst: cp})
	wantOK(t, r)
	if b, _ := os.ReadFile(cp); !bytes.Equal(b, content) {
		t.Fatal("copy differs")
	}
	mv := filepath.Join(dir, "moved.txt")
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRename, Src: cp, Dst: mv})
	wantOK(t, r)
	if _, err := os.Stat(mv); err != nil {
		t.Fatal(err)
	}
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRemove, Path: mv})
	wantOK(t, r)
	if _, err := os.Stat(mv); !os.IsNotExist(err) {
		t.Fatalf("removed file: %v", err)
	}
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRemove, Path: filepath.Dir(path)})
	if r.OK || r.Error == nil {
		t.Fatal("Remove of a directory succeeded")
	}
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRemoveDir, Path: filepath.Dir(path)})
	wantOK(t, r)
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Fatalf("removed dir: %v", err)
	}

	// Errors read as Rust's io::Error.
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsStat, Path: filepath.Join(dir, "nope")})
	if r.OK || deref(r.Error) != "No such file or directory (os error 2)" || r.Data != nil {
		t.Fatalf("Stat of a missing file: %+v %q", r, deref(r.Error))
	}
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRead, Path: dir})
	if r.OK || !strings.Contains(deref(r.Error), "os error 21") {
		t.Fatalf("Read of a directory: %q", deref(r.Error))
	}
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsWrite, Path: filepath.Join(dir, "no", "dir", "f")}, []byte("x"), nil)
	if r.OK || !strings.Contains(deref(r.Error), "os error 2") {
		t.Fatalf("Write into a missing dir: %q", deref(r.Error))
	}
	_, r = fsCall(t, h, next(), frame.FsOp{Kind: frame.FsRemoveDir, Path: filepath.Join(dir, "nope")})
	if r.OK {
		t.Fatal("RemoveDir of a missing dir succeeded")
	}
}
