package lab

import "bytes"

// LineBuffer splits a byte stream (a guest console) into whole lines for
// writers that act per line. It holds no lock: callers hold their own.
type LineBuffer struct{ partial []byte }

// Feed appends p and calls fn with each line it completes, without the
// newline.
func (b *LineBuffer) Feed(p []byte, fn func(line string)) {
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			return
		}
		fn(string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
}

// Rest returns and forgets a final line that lacked its newline; ok is
// false when there is none.
func (b *LineBuffer) Rest() (line string, ok bool) {
	line, ok = string(b.partial), len(b.partial) > 0
	b.partial = nil
	return line, ok
}
