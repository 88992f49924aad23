package sloconfig

import (
	"fmt"
	"path"
	"strings"
)

// anyDepth is the pattern element that matches zero or more path elements.
const anyDepth = "**"

// maxNameLen is the kernel's NAME_MAX; no cgroup directory name is longer.
const maxNameLen = 255

// pattern is a validated cgroup pattern. Literal patterns (no unescaped
// glob metacharacters) are looked up exactly; the others are matched
// element by element.
type pattern struct {
	literal   string   // unescaped path, set when isLiteral
	isLiteral bool     //
	elems     []string // path.Match patterns, or anyDepth
}

// compilePattern checks a cgroup pattern as written in the file. The error
// text is meant to follow "field: value: " in a FieldError.
func compilePattern(s string) (pattern, error) {
	switch {
	case s == "":
		return pattern{}, fmt.Errorf("must not be empty; use / for the root cgroup")
	case strings.IndexByte(s, 0) >= 0:
		return pattern{}, fmt.Errorf("must not contain a NUL byte")
	case s == "/sys/fs/cgroup" || strings.HasPrefix(s, "/sys/fs/cgroup/"):
		return pattern{}, fmt.Errorf("write the path relative to the cgroup hierarchy root, without /sys/fs/cgroup (e.g. /ls)")
	case s[0] != '/':
		return pattern{}, fmt.Errorf("must start with / (paths are relative to the cgroup hierarchy root, e.g. /ls)")
	}
	elems := splitPath(s)
	var lit strings.Builder
	isLiteral := true
	for _, e := range elems {
		switch {
		case e == "":
			return pattern{}, fmt.Errorf("empty path element (doubled or trailing /)")
		case e == "." || e == "..":
			return pattern{}, fmt.Errorf("path element %q is not allowed", e)
		case len(e) > maxNameLen:
			return pattern{}, fmt.Errorf("path element longer than %d bytes", maxNameLen)
		case e == anyDepth:
			isLiteral = false
			continue
		}
		// Matching against "" still parses the whole pattern, so this is
		// where a malformed class or a dangling backslash shows up.
		if _, err := path.Match(e, ""); err != nil {
			return pattern{}, fmt.Errorf("malformed glob in path element %q: %v", e, err)
		}
		u, ok := unescape(e)
		if !ok {
			isLiteral = false
		}
		lit.WriteByte('/')
		lit.WriteString(u)
	}
	p := pattern{elems: elems, isLiteral: isLiteral}
	if isLiteral {
		p.literal = lit.String()
		if p.literal == "" {
			p.literal = "/"
		}
	}
	return p, nil
}

// key identifies the set of cgroups a pattern selects, for duplicate
// detection: "/a\b" and "/ab" are the same entry.
func (p pattern) key(raw string) string {
	if p.isLiteral {
		return "path " + p.literal
	}
	return "glob " + raw // "/a/\*" (a literal) and "/a/*" differ
}

// unescape removes path.Match backslash escapes; ok is false when the
// element has an unescaped metacharacter and so is a real glob.
func unescape(e string) (string, bool) {
	if !strings.ContainsAny(e, `*?[\`) {
		return e, true
	}
	var b strings.Builder
	for i := 0; i < len(e); i++ {
		switch c := e[i]; c {
		case '*', '?', '[':
			return "", false
		case '\\':
			i++ // validated: a backslash is never last
			b.WriteByte(e[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// splitPath turns "/a/b" into ["a" "b"] and "/" into none.
func splitPath(p string) []string {
	p = p[1:]
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// matchElems reports whether name matches the pattern elements, where
// anyDepth stands for zero or more elements. It is the usual single-star
// backtracking matcher over elements, so it runs in O(len(pat)*len(name))
// however many anyDepth elements there are.
func matchElems(pat, name []string) bool {
	p, n := 0, 0
	star, starN := -1, 0
	for n < len(name) {
		switch {
		case p < len(pat) && pat[p] == anyDepth:
			star, starN = p, n
			p++
		case p < len(pat) && matchElem(pat[p], name[n]):
			p++
			n++
		case star >= 0:
			starN++
			p, n = star+1, starN
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == anyDepth {
		p++
	}
	return p == len(pat)
}

func matchElem(pat, name string) bool {
	ok, _ := path.Match(pat, name) // patterns were validated at parse time
	return ok
}
