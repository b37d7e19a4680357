package guest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind says which guest a Spec names.
type Kind uint8

const (
	KindEcho    Kind = iota + 1 // in-process Echo
	KindBuiltin                 // in-process Agent (host processes!)
	KindUnix                    // a console on a listening Unix stream socket
	KindVsock                   // a hybrid vsock port behind a Unix socket
)

func (k Kind) String() string {
	switch k {
	case KindEcho:
		return "echo"
	case KindBuiltin:
		return "builtin"
	case KindUnix:
		return "unix"
	case KindVsock:
		return "vsock"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// IsSocket reports whether the guest is reached over a socket (unix:,
// vsock:) rather than running in the relay's process.
func (s Spec) IsSocket() bool { return s.Kind == KindUnix || s.Kind == KindVsock }

// A Spec is a parsed --guest flag.
type Spec struct {
	Kind Kind
	Path string // unix and vsock: the Unix socket
	Port uint32 // vsock: the guest's port
}

// String formats s the way ParseSpec reads it.
func (s Spec) String() string {
	switch s.Kind {
	case KindUnix:
		return "unix:" + s.Path
	case KindVsock:
		return "vsock:" + s.Path + ":" + strconv.FormatUint(uint64(s.Port), 10)
	}
	return s.Kind.String()
}

// maxSocketPath is the longest path a sockaddr_un holds (108 bytes with the
// terminating NUL); longer fails at connect time with a vaguer error.
const maxSocketPath = 107

// ParseSpec parses the relay binary's --guest flag:
//
//	echo              the in-process Echo guest
//	builtin           the in-process Agent (runs commands as host processes)
//	unix:PATH         connect to a console exposed on a listening Unix socket
//	vsock:PATH:PORT   hybrid vsock (Firecracker, Cloud Hypervisor): connect to
//	                  PATH and ask for the guest's PORT; PATH may itself
//	                  contain ':' because the port is after the last one
func ParseSpec(spec string) (Spec, error) {
	scheme, rest, hasRest := strings.Cut(spec, ":")
	switch scheme {
	case "echo", "builtin":
		if hasRest {
			return Spec{}, fmt.Errorf("%s takes no argument", scheme)
		}
		if scheme == "echo" {
			return Spec{Kind: KindEcho}, nil
		}
		return Spec{Kind: KindBuiltin}, nil
	case "unix":
		if err := checkSocketPath(rest); err != nil {
			return Spec{}, err
		}
		return Spec{Kind: KindUnix, Path: rest}, nil
	case "vsock":
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return Spec{}, errors.New("want vsock:PATH:PORT")
		}
		path, portText := rest[:i], rest[i+1:]
		if err := checkSocketPath(path); err != nil {
			return Spec{}, err
		}
		port, err := parsePort(portText)
		if err != nil {
			return Spec{}, err
		}
		return Spec{Kind: KindVsock, Path: path, Port: port}, nil
	case "":
		return Spec{}, errors.New("empty spec; want echo, builtin, unix:PATH or vsock:PATH:PORT")
	}
	return Spec{}, fmt.Errorf("unknown kind %q; want echo, builtin, unix:PATH or vsock:PATH:PORT", scheme)
}

func checkSocketPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty socket path")
	case len(p) > maxSocketPath:
		return fmt.Errorf("socket path is %d bytes, longer than the %d a Unix socket address holds", len(p), maxSocketPath)
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("socket path contains a NUL byte")
	}
	return nil
}

// parsePort accepts plain decimal only: no sign, no 0x, no spaces, so a
// typo is an error rather than some other port. VMADDR_PORT_ANY (2^32-1)
// cannot be connected to.
func parsePort(s string) (uint32, error) {
	if s == "" {
		return 0, errors.New("missing vsock port")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("vsock port %q is not a decimal number", s)
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 1<<32-1 {
		return 0, fmt.Errorf("vsock port %q is out of range (0 to %d)", s, uint32(1<<32-2))
	}
	return uint32(v), nil
}
