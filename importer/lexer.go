// Package importer turns a keepalived.conf (its LVS part) or the output of
// `ipvsadm-save -n` into an equivalent lb.toml. Everything that has no exact
// equivalent in lbd is reported as a warning naming the file and line it
// came from, so an operator can review each difference before switching.
package importer

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Pos is where a token or warning comes from.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// token is one word of a keepalived line. Braces are tokens of their own.
type token struct {
	text   string
	quoted bool // was inside "..." (so "{" is a word, not a brace)
	pos    Pos
	eol    bool // last token of its line
}

// maxIncludeDepth stops include loops (a file including itself); keepalived
// has no limit but would recurse forever.
const maxIncludeDepth = 16

// lexer reads keepalived's line-oriented syntax: comments start at an
// unquoted '!' or '#', a trailing '\' continues the line, `include GLOB`
// pulls in other files (relative to the including file), `$NAME=value`
// defines a parameter that later `$NAME` or `${NAME}` expands to.
type lexer struct {
	toks   []token
	defs   map[string]string
	warn   func(Pos, string, ...any)
	readFn func(string) ([]byte, error)
	// configID selects conditional lines (@id) as keepalived -i does.
	configID string
}

func newLexer(warn func(Pos, string, ...any)) *lexer {
	return &lexer{defs: map[string]string{}, warn: warn, readFn: os.ReadFile}
}

var defRE = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)
var useRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// file lexes one file's text. dir is where relative includes are resolved.
func (lx *lexer) file(name string, data []byte, dir string, depth int) error {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		pos := Pos{name, i + 1}
		line := decomment(lines[i])
		// A trailing backslash joins the next line (keepalived's decomment
		// keeps it so the reader can continue).
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + decomment(lines[i])
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "@") {
			// Conditional lines: `@id rest` applies on the keepalived
			// started with config id `id` (-i, default its host name),
			// `@^id rest` everywhere else. Without --config-id the line is
			// skipped; a skipped line that opens a block skips the block.
			word, rest, _ := strings.Cut(line[1:], " ")
			if j := strings.IndexAny(word, "\t"); j >= 0 {
				word, rest = word[:j], word[j+1:]+" "+rest
			}
			neg := strings.HasPrefix(word, "^")
			word = strings.TrimPrefix(word, "^")
			if lx.configID != "" && (word == lx.configID) != neg {
				line = strings.TrimSpace(rest)
			} else {
				if lx.configID == "" {
					lx.warn(pos, "conditional line %q skipped: give --config-id (keepalived's -i, by default its host name) to keep the lines meant for this machine", line)
				}
				depth := braceBalance(line)
				for depth > 0 && i+1 < len(lines) {
					i++
					depth += braceBalance(decomment(lines[i]))
				}
				continue
			}
			if line == "" {
				continue
			}
		}
		if m := defRE.FindStringSubmatch(line); m != nil {
			lx.defs[m[1]] = strings.TrimSpace(m[2])
			continue
		}
		if strings.Contains(line, "$") {
			line = useRE.ReplaceAllStringFunc(line, func(s string) string {
				n := strings.Trim(s, "${}")
				if v, ok := lx.defs[n]; ok {
					return v
				}
				return s
			})
		}
		if f := strings.Fields(line); len(f) >= 1 && isInclude(f[0]) {
			if len(f) < 2 {
				return fmt.Errorf("%s: include without a file name", pos)
			}
			if err := lx.include(pos, strings.Join(f[1:], " "), dir, depth); err != nil {
				return err
			}
			continue
		}
		toks, err := splitWords(line, pos)
		if err != nil {
			return err
		}
		if len(toks) > 0 {
			toks[len(toks)-1].eol = true
			lx.toks = append(lx.toks, toks...)
		}
	}
	return nil
}

// isInclude matches keepalived's include keywords: include, and its
// variants includer/includem/includew/includeb/includea that only change
// which file permissions keepalived tolerates.
func isInclude(w string) bool {
	if w == "include" {
		return true
	}
	return len(w) == 8 && strings.HasPrefix(w, "include") && strings.ContainsRune("rmwba", rune(w[7]))
}

func (lx *lexer) include(pos Pos, pattern, dir string, depth int) error {
	if depth >= maxIncludeDepth {
		return fmt.Errorf("%s: include nested deeper than %d files (an include loop?)", pos, maxIncludeDepth)
	}
	pattern = strings.Trim(pattern, `"`)
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(dir, pattern)
	}
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("%s: include %q: %v", pos, pattern, err)
	}
	if len(matches) == 0 {
		// keepalived logs this and goes on; so do we, but loudly.
		lx.warn(pos, "include %q matches no file; skipped", pattern)
		return nil
	}
	sort.Strings(matches)
	for _, m := range matches {
		data, err := lx.readFn(m)
		if err != nil {
			return fmt.Errorf("%s: include: %v", pos, err)
		}
		if err := lx.file(m, data, filepath.Dir(m), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// decomment cuts a line at the first '!' or '#' outside double quotes; a
// backslash before either keeps it as a character, as keepalived does.
func decomment(s string) string {
	var b strings.Builder
	quote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quote = !quote
		case c == '\\' && !quote && i+1 < len(s) && (s[i+1] == '!' || s[i+1] == '#'):
			i++
			c = s[i]
		case (c == '!' || c == '#') && !quote:
			return b.String()
		}
		b.WriteByte(c)
	}
	return b.String()
}

// splitWords splits a line at whitespace; "..." is one word without its
// quotes; unquoted braces are words of their own even when glued to a word
// (keepalived wants them spaced, but a typo should not change meaning).
func splitWords(line string, pos Pos) ([]token, error) {
	var out []token
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("%s: unterminated quote in %q", pos, line)
			}
			out = append(out, token{text: line[i+1 : i+1+j], quoted: true, pos: pos})
			i += j + 2
		case c == '{' || c == '}':
			out = append(out, token{text: string(c), pos: pos})
			i++
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t\"{}", rune(line[j])) {
				j++
			}
			out = append(out, token{text: line[i:j], pos: pos})
			i = j
		}
	}
	return out, nil
}

// braceBalance is the number of unquoted '{' minus '}' on a line.
func braceBalance(line string) int {
	n, quote := 0, false
	for _, r := range line {
		switch {
		case r == '"':
			quote = !quote
		case r == '{' && !quote:
			n++
		case r == '}' && !quote:
			n--
		}
	}
	return n
}
