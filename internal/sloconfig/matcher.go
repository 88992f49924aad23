package sloconfig

import (
	"slices"
	"strings"
)

// matcher finds the entry that applies to a cgroup path; it is built once
// per config. Exact paths are one map lookup. A glob can only match a path
// that contains the literal text of its pattern, so each glob is filed
// under one trigram (three bytes) of that text, the trigram fewest globs
// share. A lookup tries only the globs filed under trigrams the path
// contains, plus the few without three literal bytes (/*/*): with
// thousands of globs under one prefix it still tries a handful.
type matcher struct {
	exact  map[string]int // literal path -> index into SLOs
	globs  []glob         // in file order
	byTri  map[uint32][]int32
	always []int32 // globs with no required trigram
	// Buckets and always hold indexes into globs in ascending (file)
	// order, so a lookup can stop as soon as an earlier glob has matched.
}

type glob struct {
	elems []string
	slo   int
	// runs is the literal text the glob requires; a path lacking any of
	// it is rejected with strings.Contains, before the element matcher.
	runs []string
}

func newMatcher(slos []SLO) *matcher {
	m := &matcher{exact: make(map[string]int), byTri: make(map[uint32][]int32)}
	var tris [][]uint32 // per glob: the trigrams it requires
	freq := make(map[uint32]int)
	for i, s := range slos {
		p, err := compilePattern(s.Cgroup)
		if err != nil {
			continue // only hand-built configs get here; such entries match nothing
		}
		if p.isLiteral {
			if _, dup := m.exact[p.literal]; !dup {
				m.exact[p.literal] = i
			}
			continue
		}
		runs := requiredRuns(p.elems)
		m.globs = append(m.globs, glob{elems: p.elems, slo: i, runs: runs})
		t := trigramsOf(runs)
		for _, k := range t {
			freq[k]++
		}
		tris = append(tris, t)
	}
	for g, t := range tris {
		if len(t) == 0 {
			m.always = append(m.always, int32(g))
			continue
		}
		rarest := t[0]
		for _, k := range t[1:] {
			if freq[k] < freq[rarest] {
				rarest = k
			}
		}
		m.byTri[rarest] = append(m.byTri[rarest], int32(g))
	}
	return m
}

// match returns the index into SLOs of the entry for a normalised path
// ("/a/b", "/" for the root).
func (m *matcher) match(norm string) (int, bool) {
	if i, ok := m.exact[norm]; ok {
		return i, true
	}
	if len(m.globs) == 0 {
		return 0, false
	}
	name := splitPath(norm)
	best := len(m.globs) // the earliest matching glob so far
	try := func(cands []int32) {
		for _, g := range cands {
			if int(g) >= best {
				return
			}
			if containsAll(norm, m.globs[g].runs) && matchElems(m.globs[g].elems, name) {
				best = int(g)
				return
			}
		}
	}
	try(m.always)
	for _, k := range pathTrigrams(norm) {
		try(m.byTri[k])
	}
	if best == len(m.globs) {
		return 0, false
	}
	return m.globs[best].slo, true
}

// requiredRuns lists the literal runs (of three bytes or more) in a
// glob's elements: every path the glob matches contains each of them.
func requiredRuns(elems []string) []string {
	var out []string
	for _, e := range elems {
		if e != anyDepth {
			out = append(out, literalRuns(e)...)
		}
	}
	return out
}

// trigramsOf lists the distinct trigrams of runs.
func trigramsOf(runs []string) []uint32 {
	var out []uint32
	for _, run := range runs {
		for i := 0; i+3 <= len(run); i++ {
			if k := trigram(run, i); !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// literalRuns returns the runs of literal bytes (escapes resolved) that
// any name matching the path.Match pattern e contains. It gives up at a
// character class: reading past one needs path.Match's whole class
// syntax, and a run left out only costs speed, never a match.
func literalRuns(e string) []string {
	var runs []string
	var cur []byte
	flush := func() {
		if len(cur) >= 3 {
			runs = append(runs, string(cur))
		}
		cur = cur[:0]
	}
	for i := 0; i < len(e); i++ {
		switch c := e[i]; c {
		case '*', '?':
			flush()
		case '[':
			flush()
			return runs
		case '\\':
			i++ // validated: a backslash is never last
			cur = append(cur, e[i])
		default:
			cur = append(cur, c)
		}
	}
	flush()
	return runs
}

// pathTrigrams lists the distinct trigrams of a path.
func pathTrigrams(p string) []uint32 {
	if len(p) < 3 {
		return nil
	}
	out := make([]uint32, 0, len(p)-2)
	for i := 0; i+3 <= len(p); i++ {
		out = append(out, trigram(p, i))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func trigram(s string, i int) uint32 {
	return uint32(s[i])<<16 | uint32(s[i+1])<<8 | uint32(s[i+2])
}
