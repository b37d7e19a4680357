package frame

// cb builds CBOR by hand for tests, including forms the encoder never
// writes (odd key orders, repeats, unknown keys, non-minimal heads).
type cb []byte

func (b cb) head(major byte, n uint64) cb { return appendHead(b, major, n) }
func (b cb) m(n int) cb                   { return b.head(majorMap, uint64(n)) }
func (b cb) a(n int) cb                   { return b.head(majorArray, uint64(n)) }
func (b cb) u(n uint64) cb                { return b.head(majorUint, n) }
func (b cb) t(s string) cb                { return append(b.head(majorText, uint64(len(s))), s...) }
func (b cb) b(s []byte) cb                { return append(b.head(majorBytes, uint64(len(s))), s...) }
func (b cb) raw(p ...byte) cb             { return append(b, p...) }

// frameOf wraps a body into a frame.
func frameOf(body []byte) []byte { return AppendFrame(nil, 42, 0, body) }
