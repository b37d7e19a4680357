package agent

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/agentrelay/agentrelay/frame"
)

// fsChunk is the size of the core.fs.data chunks Read sends (the protocol
// allows up to 3 MiB).
const fsChunk = 1 << 20

// An fsWrite is a Write request receiving its core.fs.data chunks. The file
// is opened (and truncated) when the request arrives; an error then or on
// a chunk is kept and reported when the empty chunk ends the data.
type fsWrite struct {
	path string
	mode *uint32
	f    *os.File
	err  error
}

func (w *fsWrite) abort() {
	if w.f != nil {
		w.f.Close()
	}
}

// fsRequest runs one core.fs.request on the host file system. Everything
// but Read and Write answers at once; Read streams from a goroutine, Write
// waits for its data.
func (a *server) fsRequest(id uint32, op frame.FsOp) {
	var (
		res *frame.FsResult
		err error
	)
	switch op.Kind {
	case frame.FsStat:
		var e frame.FsEntry
		if e, err = statEntry(op.Path, os.Stat); err == nil {
			res = &frame.FsResult{Stat: &e}
		}
	case frame.FsList:
		var list []frame.FsEntry
		if list, err = listDir(op.Path); err == nil {
			res = &frame.FsResult{List: list}
		}
	case frame.FsRead:
		a.fsRead(id, op.Path)
		return
	case frame.FsWrite:
		if old := a.writes[id]; old != nil {
			old.abort()
		}
		w := &fsWrite{path: op.Path, mode: op.Mode}
		perm := os.FileMode(0o644)
		if op.Mode != nil {
			perm = os.FileMode(*op.Mode) & os.ModePerm
		}
		w.f, w.err = os.OpenFile(op.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		a.writes[id] = w
		return
	case frame.FsMkdir:
		err = os.MkdirAll(op.Path, 0o755)
	case frame.FsRemove:
		// A file, not a directory, as Rust's remove_file: unlink(2)
		// fails with EISDIR on a directory.
		err = syscall.Unlink(op.Path)
		if err != nil {
			err = &os.PathError{Op: "unlink", Path: op.Path, Err: err}
		}
	case frame.FsRemoveDir:
		// The directory and what it holds; a missing one is an error,
		// as for Rust's remove_dir_all.
		if _, err = os.Lstat(op.Path); err == nil {
			err = os.RemoveAll(op.Path)
		}
	case frame.FsCopy:
		err = copyFile(op.Src, op.Dst)
	case frame.FsRename:
		err = os.Rename(op.Src, op.Dst)
	default:
		a.sendFsError(id, "unsupported operation "+op.Kind.String())
		return
	}
	if err != nil {
		a.sendFsError(id, ioErrorText(err))
		return
	}
	a.send(id, frame.TypeFsResponse, &frame.FsResponse{OK: true, Data: res})
}

// fsData takes one chunk of a Write; the empty chunk ends it.
func (a *server) fsData(id uint32, data []byte) {
	w := a.writes[id]
	if w == nil {
		return
	}
	if len(data) > 0 {
		if w.err == nil {
			_, w.err = w.f.Write(data)
		}
		return
	}
	delete(a.writes, id)
	if w.f != nil {
		if err := w.f.Close(); w.err == nil {
			w.err = err
		}
	}
	// The open's mode was filtered by the umask; an explicit mode is
	// meant as given.
	if w.err == nil && w.mode != nil {
		w.err = os.Chmod(w.path, os.FileMode(*w.mode)&os.ModePerm)
	}
	if w.err != nil {
		a.sendFsError(id, ioErrorText(w.err))
		return
	}
	a.send(id, frame.TypeFsResponse, &frame.FsResponse{OK: true})
}

// fsRead streams a file as core.fs.data chunks, then core.fs.response.
func (a *server) fsRead(id uint32, path string) {
	f, err := os.Open(path)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.IsDir() {
			err = &os.PathError{Op: "read", Path: path, Err: syscall.EISDIR}
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		a.sendFsError(id, ioErrorText(err))
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer f.Close()
		buf := make([]byte, fsChunk)
		for {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				if a.send(id, frame.TypeFsData, frame.FsData{Data: buf[:n]}) != nil {
					return // the relay is gone
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				a.sendFsError(id, ioErrorText(err))
				return
			}
		}
		a.send(id, frame.TypeFsResponse, &frame.FsResponse{OK: true})
	}()
}

func (a *server) sendFsError(id uint32, msg string) {
	a.send(id, frame.TypeFsResponse, &frame.FsResponse{Error: &msg})
}

// statEntry describes path with stat (which follows a final symlink, as
// Rust's fs::metadata) or lstat.
func statEntry(path string, stat func(string) (os.FileInfo, error)) (frame.FsEntry, error) {
	fi, err := stat(path)
	if err != nil {
		return frame.FsEntry{}, err
	}
	return entry(path, fi), nil
}

// listDir describes a directory's entries, symlinks as themselves.
func listDir(dir string) ([]frame.FsEntry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	list := make([]frame.FsEntry, 0, len(des))
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		list = append(list, entry(filepath.Join(dir, de.Name()), fi))
	}
	return list, nil
}

func entry(path string, fi os.FileInfo) frame.FsEntry {
	e := frame.FsEntry{Path: path, Size: uint64(fi.Size())}
	switch {
	case fi.Mode().IsRegular():
		e.Kind = "file"
	case fi.IsDir():
		e.Kind = "dir"
	case fi.Mode()&os.ModeSymlink != 0:
		e.Kind = "symlink"
	default:
		e.Kind = "other"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Mode = st.Mode
		e.Size = uint64(st.Size)
	}
	mod := fi.ModTime().Unix()
	e.Modified = &mod
	return e
}

// copyFile copies a regular file's bytes and permissions, as Rust's
// fs::copy.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("the source path is neither a regular file nor a symlink to a regular file")
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(fi.Mode().Perm()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ioErrorText formats err as Rust's io::Error does, which is what agentd's
// responses carry: "No such file or directory (os error 2)".
func ioErrorText(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	s := errno.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s + " (os error " + strconv.Itoa(int(errno)) + ")"
}
