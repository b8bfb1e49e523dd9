package routeros

import (
	"fmt"
	"strings"
)

// Entry is one item of a `print detail` or `print terse` listing.
type Entry struct {
	// Index is the leading item number.
	Index int
	// Flags holds the flag letters printed between the index and the
	// first property ("X", "D", "XD", ""); they are never part of a key.
	Flags string
	// Props maps each key to its unquoted, unescaped value ("" for `""`).
	// A `;;; text` comment line is stored under "comment" unless the item
	// also prints a comment= property.
	Props map[string]string
	// Keys lists the keys in the order they appeared.
	Keys []string
}

// Get returns the value of key and whether the entry has it.
func (e Entry) Get(key string) (string, bool) {
	v, ok := e.Props[key]
	return v, ok
}

// clean removes carriage returns and ANSI escape sequences. Colours are
// normally turned off with the "+ct" login flags, but a unit configured
// otherwise must not break parsing.
func clean(s string) string {
	if strings.IndexByte(s, '\r') < 0 && strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r':
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			// CSI: parameter and intermediate bytes, then one final byte.
			i += 2
			for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
				i++
			}
		case c == 0x1b && i+1 < len(s) && s[i+1] == ']':
			// OSC: ends with BEL or ESC '\'.
			i += 2
			for i < len(s) && s[i] != 0x07 && !(s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\') {
				i++
			}
			if i < len(s) && s[i] == 0x1b {
				i++
			}
		case c == 0x1b:
			i++ // two-byte escape such as ESC 7 / ESC 8
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func isKeyStart(c byte) bool { return c >= 'a' && c <= 'z' }

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.'
}

// keyAt reports whether s[i:] starts with `key=`.
func keyAt(s string, i int) bool {
	if i >= len(s) || !isKeyStart(s[i]) {
		return false
	}
	for i++; i < len(s) && isKeyChar(s[i]); i++ {
	}
	return i < len(s) && s[i] == '='
}

func indentOf(line string) int {
	i := 0
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	return i
}

func isBlank(line string) bool { return indentOf(line) == len(line) }

// isLegend reports whether a (left-trimmed) line is a flags legend or a
// table column header.
func isLegend(trimmed string) bool {
	return strings.HasPrefix(trimmed, "Flags:") || strings.HasPrefix(trimmed, "Columns:")
}

// parseIndex recognises `<spaces><digits>` followed by whitespace or the
// end of the line. end is the byte offset just after the digits.
func parseIndex(line string) (idx, end int, ok bool) {
	i := indentOf(line)
	j := i
	for j < len(line) && line[j] >= '0' && line[j] <= '9' {
		j++
	}
	if j == i || j-i > 9 || (j < len(line) && !isSpace(line[j])) {
		return 0, 0, false
	}
	for k := i; k < j; k++ {
		idx = idx*10 + int(line[k]-'0')
	}
	return idx, j, true
}

// splitFlags separates the flag letters from the rest of an index line.
// Flags are tokens made only of upper-case letters or '*'.
func splitFlags(rest string) (flags, body string) {
	var f []byte
	for {
		i := indentOf(rest)
		j := i
		for j < len(rest) && !isSpace(rest[j]) {
			j++
		}
		tok := rest[i:j]
		if tok == "" || !isFlagToken(tok) {
			return string(f), rest[i:]
		}
		f = append(f, tok...)
		rest = rest[j:]
	}
}

func isFlagToken(tok string) bool {
	if len(tok) > 8 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !(tok[i] >= 'A' && tok[i] <= 'Z' || tok[i] == '*') {
			return false
		}
	}
	return true
}

// scanState follows the joined text of an entry one byte at a time, with
// the same rules as tokenize, so that the wrapping rule can tell whether
// the text so far ends inside a quoted value.
type scanState uint8

const (
	sSpace      scanState = iota // between tokens
	sWord                        // a word of key characters, no '=' yet
	sValStart                    // just after `key=`
	sQuoted                      // inside "..."
	sQuotedEsc                   // just after a backslash inside "..."
	sAfterQuote                  // just after the closing quote
	sBare                        // inside an unquoted value or other text
)

func (s scanState) next(c byte) scanState {
	switch s {
	case sQuoted:
		switch c {
		case '\\':
			return sQuotedEsc
		case '"':
			return sAfterQuote
		}
		return sQuoted
	case sQuotedEsc:
		return sQuoted
	}
	if isSpace(c) {
		return sSpace
	}
	switch s {
	case sSpace:
		if isKeyStart(c) {
			return sWord
		}
	case sWord:
		if c == '=' {
			return sValStart
		}
		if isKeyChar(c) {
			return sWord
		}
	case sValStart:
		if c == '"' {
			return sQuoted
		}
	}
	return sBare
}

func (s scanState) inQuote() bool { return s == sQuoted || s == sQuotedEsc }

// entryBuilder collects the physical lines of one `print detail` entry.
type entryBuilder struct {
	index    int
	flags    string
	indexEnd int // column just after the index digits
	line     int // line number of the index line, for errors
	comment  string
	comment1 bool
	buf      []byte
	st       scanState
}

func (b *entryBuilder) feed(s string) {
	b.buf = append(b.buf, s...)
	for i := 0; i < len(s); i++ {
		b.st = b.st.next(s[i])
	}
}

// join appends one continuation line (indentation already removed).
// prevFull tells whether the physical line before it filled the console
// width.
//
// RouterOS wraps `print detail` at the console width and prefers to
// break a line at a space; only a run of text with no space before the
// width is cut in the middle (rdsclient/docs/device.md, "Wrapping").
// Values may contain spaces (`size=53 687 091 200`, `type=.img file`),
// so a break can fall inside a value as well as between properties. The
// length of the line before a continuation therefore says how to join:
//
//	(a) it ended short of the width: the device broke it at a space,
//	    which the line break replaced; join with one space;
//	(b) it filled the width and the continuation starts with `key=`
//	    ([a-z][a-z0-9.-]*=) outside a quoted value: a property ended
//	    exactly at the width and the next one starts a line; join with
//	    one space;
//	(c) else it filled the width because a run was cut mid-token: join
//	    with no separator.
//
// Outside quotes, trailing spaces before a joining space are dropped
// (unquoted values never hold two spaces in a row); inside quotes every
// byte is kept. Known ambiguities: an unquoted value cut just before
// text that looks like `key=` reads as (b), but RouterOS quotes values
// containing '='; and a run of text that exactly fills a line and is
// followed by a space reads as (c), losing that space, since the break
// cannot be told from a cut.
func (b *entryBuilder) join(cont string, prevFull bool) {
	switch {
	case len(b.buf) == 0:
		if !b.comment1 && strings.HasPrefix(cont, ";;;") {
			b.comment, b.comment1 = strings.TrimSpace(cont[3:]), true
			return
		}
		b.feed(cont)
	case prevFull && (b.st.inQuote() || !keyAt(cont, 0)):
		b.feed(cont) // (c)
	case b.st.inQuote():
		b.feed(" ") // (a) inside a quoted value
		b.feed(cont)
	default: // (a) or (b)
		for len(b.buf) > 0 && isSpace(b.buf[len(b.buf)-1]) {
			b.buf = b.buf[:len(b.buf)-1]
		}
		b.feed(" ")
		b.feed(cont)
	}
}

func (b *entryBuilder) entry(atEnd bool) (Entry, error) {
	errKind := ErrMalformed
	if atEnd {
		errKind = ErrTruncated
	}
	if b.st.inQuote() {
		return Entry{}, fmt.Errorf("%w: item %d (line %d): unterminated quoted value", errKind, b.index, b.line)
	}
	e := Entry{Index: b.index, Flags: b.flags, Props: map[string]string{}}
	if b.comment1 {
		e.Props["comment"] = b.comment
		e.Keys = append(e.Keys, "comment")
	}
	if err := tokenize(string(b.buf), &e); err != nil {
		return Entry{}, fmt.Errorf("item %d (line %d): %w", b.index, b.line, err)
	}
	if len(e.Keys) == 0 {
		return Entry{}, fmt.Errorf("%w: item %d (line %d) has no properties", errKind, b.index, b.line)
	}
	return e, nil
}

// tokenize splits `key=value key="quoted value" ...` into e. A quoted
// value ends at the closing quote (`\x` stands for x); an unquoted value
// runs up to the whitespace that precedes the next `key=`, so values may
// contain spaces (`type=.img file`, `size=53 687 091 200`).
func tokenize(s string, e *Entry) error {
	n := len(s)
	i := 0
	for {
		for i < n && isSpace(s[i]) {
			i++
		}
		if i == n {
			return nil
		}
		if !keyAt(s, i) {
			return fmt.Errorf("%w: expected key=value at %q", ErrMalformed, clip(s[i:]))
		}
		j := i
		for s[j] != '=' {
			j++
		}
		key := s[i:j]
		j++
		var val string
		if j < n && s[j] == '"' {
			var sb strings.Builder
			k, closed := j+1, false
			for k < n {
				c := s[k]
				if c == '\\' {
					if k+1 == n {
						k++
						break
					}
					sb.WriteByte(s[k+1])
					k += 2
					continue
				}
				k++
				if c == '"' {
					closed = true
					break
				}
				sb.WriteByte(c)
			}
			if !closed {
				return fmt.Errorf("%w: unterminated quoted value of %q", ErrTruncated, key)
			}
			if k < n && !isSpace(s[k]) {
				return fmt.Errorf("%w: text after quoted value of %q: %q", ErrMalformed, key, clip(s[k:]))
			}
			val, i = sb.String(), k
		} else {
			end, k := n, j
			for k < n {
				if !isSpace(s[k]) {
					k++
					continue
				}
				m := k
				for m < n && isSpace(s[m]) {
					m++
				}
				if m == n || keyAt(s, m) {
					end = k
					break
				}
				k = m
			}
			val, i = strings.TrimLeft(s[j:end], " \t"), end
		}
		if _, dup := e.Props[key]; !dup {
			e.Keys = append(e.Keys, key)
		}
		e.Props[key] = val
	}
}

// DefaultWidth is the console width RouterOS wraps `print detail` at
// when the login name sets none (rdsclient/docs/device.md, "Wrapping").
const DefaultWidth = 80

// ConsoleWidth returns the console width a login name asks for with its
// `<n>w` flag ("admin+ct200w" -> 200), or DefaultWidth when it has none
// or its flags are malformed.
func ConsoleWidth(login string) int {
	_, flags, ok := strings.Cut(login, "+")
	if !ok {
		return DefaultWidth
	}
	width, num := DefaultWidth, 0
	digits := false
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		switch {
		case c >= '0' && c <= '9':
			if num > 100000 {
				return DefaultWidth
			}
			num, digits = num*10+int(c-'0'), true
			continue
		case c == 'w':
			if !digits || num == 0 {
				return DefaultWidth
			}
			width = num
		case c < 'a' || c > 'z':
			return DefaultWidth
		}
		num, digits = 0, false
	}
	if digits {
		return DefaultWidth
	}
	return width
}

// ParseDetail parses the output of a `print detail` command: items that
// start with an index number, optional flag letters, then properties that
// may wrap over indented continuation lines (see the joining rule on
// entryBuilder.join). width is the console width the output was wrapped
// at (see ConsoleWidth); a line longer than width proves the device used
// a wider console, and then the longest line is taken as the width;
// width 0 or less means unknown, which takes the longest line too.
// Flags legends, `Columns:` headers, blank lines, carriage returns and
// ANSI escapes are skipped. Output matching nothing yields no entries and
// no error; output cut in the middle of an item, or a line that fits none
// of the shapes, is an error.
func ParseDetail(out string, width int) ([]Entry, error) {
	lines := strings.Split(clean(out), "\n")
	for _, l := range lines {
		width = max(width, len(l))
	}
	var (
		entries  []Entry
		cur      *entryBuilder
		inLegend bool
		prevFull bool // the entry's last line filled the width
	)
	flush := func(atEnd bool) error {
		if cur == nil {
			return nil
		}
		e, err := cur.entry(atEnd)
		cur = nil
		if err != nil {
			return fmt.Errorf("routeros: print detail: %w", err)
		}
		entries = append(entries, e)
		return nil
	}
	for n, line := range lines {
		if isBlank(line) {
			if err := flush(false); err != nil {
				return nil, err
			}
			inLegend = false
			continue
		}
		ind := indentOf(line)
		trimmed := line[ind:]
		if isLegend(trimmed) {
			if err := flush(false); err != nil {
				return nil, err
			}
			inLegend = true
			continue
		}
		if inLegend && ind > 0 && !strings.Contains(trimmed, "=") {
			continue // the legend wrapped
		}
		inLegend = false
		// A new index must start left of where the current index ended:
		// indices are printed in a narrow column, while continuation
		// lines are indented past it and may themselves start with
		// digits (a wrapped "053 687 091 200").
		if idx, end, ok := parseIndex(line); ok && (cur == nil || ind < cur.indexEnd) {
			if err := flush(false); err != nil {
				return nil, err
			}
			flags, body := splitFlags(line[end:])
			cur = &entryBuilder{index: idx, flags: flags, indexEnd: end, line: n + 1}
			cur.join(body, false)
			prevFull = len(line) >= width
			continue
		}
		if cur != nil && ind > 0 {
			cur.join(trimmed, prevFull)
			prevFull = len(line) >= width
			continue
		}
		return nil, fmt.Errorf("%w: print detail: line %d: unexpected %q", ErrMalformed, n+1, clip(line))
	}
	if err := flush(true); err != nil {
		return nil, err
	}
	return entries, nil
}

// ParseTerse parses the output of a `print terse` command: one item per
// line, `<index> [flags] key=value ...`. Legends and blank lines are
// skipped; any other line is an error.
func ParseTerse(out string) ([]Entry, error) {
	lines := strings.Split(clean(out), "\n")
	last := len(lines) - 1
	for last >= 0 && isBlank(lines[last]) {
		last--
	}
	var entries []Entry
	inLegend := false
	for n, line := range lines {
		if isBlank(line) {
			inLegend = false
			continue
		}
		ind := indentOf(line)
		trimmed := line[ind:]
		if isLegend(trimmed) {
			inLegend = true
			continue
		}
		if inLegend && ind > 0 && !strings.Contains(trimmed, "=") {
			continue
		}
		inLegend = false
		idx, end, ok := parseIndex(line)
		if !ok {
			return nil, fmt.Errorf("%w: print terse: line %d: unexpected %q", ErrMalformed, n+1, clip(line))
		}
		flags, body := splitFlags(line[end:])
		b := entryBuilder{index: idx, flags: flags, indexEnd: end, line: n + 1}
		b.join(body, false)
		e, err := b.entry(n == last)
		if err != nil {
			return nil, fmt.Errorf("routeros: print terse: %w", err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// ParseKV parses "key: value" lines with right-aligned keys, as printed
// by `/system resource print`, `/system identity print` and
// `monitor-traffic ... once`. Values are trimmed; blank lines are
// skipped; a later duplicate key wins.
func ParseKV(out string) (map[string]string, error) {
	m := map[string]string{}
	for n, line := range strings.Split(clean(out), "\n") {
		if isBlank(line) {
			continue
		}
		t := line[indentOf(line):]
		j := 0
		if isKeyStart(t[0]) {
			for j = 1; j < len(t) && isKeyChar(t[j]); j++ {
			}
		}
		if j == 0 || j == len(t) || t[j] != ':' || (j+1 < len(t) && !isSpace(t[j+1])) {
			return nil, fmt.Errorf("%w: key: value listing: line %d: unexpected %q", ErrMalformed, n+1, clip(line))
		}
		m[t[:j]] = strings.TrimSpace(t[j+1:])
	}
	return m, nil
}
