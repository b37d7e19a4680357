package execlog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// open opens exec.log for appending; its current size counts toward
// rotation.
func (f *file) open() error {
	fd, err := os.OpenFile(f.paths[0], os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_CLOEXEC, 0o600) // command output: private, like the socket
	if err != nil {
		return fmt.Errorf("execlog: %w", err)
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return fmt.Errorf("execlog: %w", err)
	}
	f.fd, f.size = fd, st.Size()
	return nil
}

func (f *file) close() error {
	if f.fd == nil {
		return nil
	}
	err := f.fd.Close()
	f.fd = nil
	if err != nil {
		return fmt.Errorf("execlog: %w", err)
	}
	return nil
}

// rotate shifts exec.log.N-1 to .N … exec.log to .1, dropping the oldest
// (a rename replaces it), and starts an empty exec.log. With no rotated
// files kept, exec.log is simply removed.
func (f *file) rotate() error {
	errs := []error{f.close()}
	keep := len(f.paths) - 1
	if keep == 0 {
		if err := os.Remove(f.paths[0]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("execlog: rotate: %w", err))
		}
	}
	for i := keep - 1; i >= 0; i-- {
		if err := os.Rename(f.paths[i], f.paths[i+1]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("execlog: rotate: %w", err))
		}
	}
	errs = append(errs, f.open())
	return errors.Join(errs...)
}
