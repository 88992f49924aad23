package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// debianArchive is the host's Debian mirror as configured for apt: we reuse
// its URI and keyring for other suites instead of naming any mirror
// ourselves.
type debianArchive struct {
	URI      string
	SignedBy string // keyring path, or "" to use apt's trusted keys
	From     string // file it was found in, for messages
}

const defaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// aptSource is one "deb" entry from sources.list(.d), either format.
type aptSource struct {
	Types, URIs, Suites, Components []string
	SignedBy, File                  string
}

// hostDebianArchive finds the apt source that serves the host's own Debian
// release (e.g. "bookworm" or "bookworm-updates") and returns its mirror.
func hostDebianArchive(etcApt, osRelease string) (*debianArchive, error) {
	if uri := os.Getenv("SCX_SLO_LAB_MIRROR"); uri != "" {
		return &debianArchive{URI: uri, SignedBy: existing(defaultKeyring), From: "$SCX_SLO_LAB_MIRROR"}, nil
	}
	codename, err := osCodename(osRelease)
	if err != nil {
		return nil, err
	}
	sources, err := readAptSources(etcApt)
	if err != nil {
		return nil, err
	}
	for _, s := range sources {
		if !slices.Contains(s.Types, "deb") || !slices.Contains(s.Components, "main") || len(s.URIs) == 0 {
			continue
		}
		for _, suite := range s.Suites {
			if suite == codename || suite == codename+"-updates" {
				return &debianArchive{URI: strings.TrimSuffix(s.URIs[0], "/"), SignedBy: s.SignedBy, From: s.File}, nil
			}
		}
	}
	return nil, fmt.Errorf("no apt source for Debian %q with component main in %s (sources.list, sources.list.d/*.list, *.sources); "+
		"the lab fetches its kernel from the host's Debian mirror, or set SCX_SLO_LAB_MIRROR to a Debian archive URI", codename, etcApt)
}

func existing(p string) string {
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// osCodename reads VERSION_CODENAME from os-release.
func osCodename(osRelease string) (string, error) {
	data, err := os.ReadFile(osRelease)
	if err != nil {
		return "", fmt.Errorf("reading host release name: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
			if v = strings.Trim(v, `"'`); v != "" {
				return v, nil
			}
		}
	}
	return "", fmt.Errorf("%s has no VERSION_CODENAME: the lab needs a Debian host to find a mirror (or set SCX_SLO_LAB_MIRROR)", osRelease)
}

// readAptSources reads every source file apt itself would read; other
// suffixes (such as "*.disabled") are ignored just as apt ignores them.
func readAptSources(etcApt string) ([]aptSource, error) {
	var out []aptSource
	files := []string{filepath.Join(etcApt, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	files = append(files, more...)
	for _, f := range files {
		var parse func(string, string) ([]aptSource, error)
		switch {
		case strings.HasSuffix(f, ".list"):
			parse = parseOneLineSources
		case strings.HasSuffix(f, ".sources"):
			parse = parseDeb822Sources
		default:
			continue
		}
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s, err := parse(string(data), f)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// parseOneLineSources parses "deb [opt=val ...] URI suite comp..." lines.
func parseOneLineSources(text, file string) ([]aptSource, error) {
	var out []aptSource
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		s := aptSource{Types: fields[:1], File: file}
		rest := fields[1:]
		if len(rest) > 0 && strings.HasPrefix(rest[0], "[") {
			var opts []string
			for len(rest) > 0 {
				tok := rest[0]
				rest = rest[1:]
				opts = append(opts, strings.Trim(tok, "[]"))
				if strings.HasSuffix(tok, "]") {
					break
				}
			}
			for _, o := range opts {
				if k, v, ok := strings.Cut(o, "="); ok && strings.EqualFold(k, "signed-by") {
					s.SignedBy = v
				}
			}
		}
		if len(rest) < 2 {
			return nil, fmt.Errorf("%s: malformed source line %q", file, sc.Text())
		}
		s.URIs, s.Suites, s.Components = rest[:1], rest[1:2], rest[2:]
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseDeb822Sources parses the stanza format of *.sources files.
func parseDeb822Sources(text, file string) ([]aptSource, error) {
	var out []aptSource
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n\n") {
		fields := map[string]string{}
		var key string
		for _, line := range strings.Split(stanza, "\n") {
			switch {
			case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			case line[0] == ' ' || line[0] == '\t':
				// Continuation line, e.g. an inline Signed-By key block.
				if key != "" {
					fields[key] += "\n" + strings.TrimSpace(line)
				}
			default:
				k, v, ok := strings.Cut(line, ":")
				if !ok {
					return nil, fmt.Errorf("%s: malformed line %q", file, line)
				}
				key = strings.ToLower(strings.TrimSpace(k))
				fields[key] = strings.TrimSpace(v)
			}
		}
		if len(fields) == 0 || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, aptSource{
			Types:      strings.Fields(fields["types"]),
			URIs:       strings.Fields(fields["uris"]),
			Suites:     strings.Fields(fields["suites"]),
			Components: strings.Fields(fields["components"]),
			SignedBy:   fields["signed-by"],
			File:       file,
		})
	}
	return out, nil
}
