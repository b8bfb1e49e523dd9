package rdstest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// cliError is an error the RouterOS console prints on the terminal; the
// command then ends with a non-zero exit status.
type cliError struct{ msg string }

func (e *cliError) Error() string { return e.msg }

// Console error texts. The wording follows rdsclient/docs/device.md,
// "Error texts and their classes"; column numbers are 1-based byte
// offsets into the command line, as the console reports.
func errSyntax(col int) *cliError {
	return &cliError{fmt.Sprintf("syntax error (line 1 column %d)", col)}
}
func errEnd(col int) *cliError {
	return &cliError{fmt.Sprintf("expected end of command (line 1 column %d)", col)}
}
func errCmdName(col int) *cliError {
	return &cliError{fmt.Sprintf("expected command name (line 1 column %d)", col)}
}
func errBadName(word string, col int) *cliError {
	return &cliError{fmt.Sprintf("bad command name %s (line 1 column %d)", word, col)}
}
func errValue(name string) *cliError   { return &cliError{"invalid value for argument " + name} }
func errNoMatch(name string) *cliError { return &cliError{"input does not match any value of " + name} }
func failure(reason string) *cliError  { return &cliError{"failure: " + reason} }

// menu is one node of the console's menu tree.
type menu struct {
	path  string // "disk", "system identity"
	sub   map[string]*menu
	verbs map[string]bool
	props map[string]bool // property names usable in where/find
}

var diskProps = []string{
	"type", "slot", "slot-default", "parent", "fs", "model", "size", "mount-filesystem",
	"mount-read-only", "compress", "sector-size", "raid-master", "nvme-tcp-export",
	"nvme-tcp-server-port", "nvme-tcp-server-nqn", "nvme-tcp-server-allow-host-name",
	"iscsi-export", "nfs-sharing", "smb-sharing", "media-sharing", "media-interface", "swap",
	"file-path", "file-size", "file-offset", "mount-point", "file-system", "free", "use",
}

var fileProps = []string{"name", "type", "size", "last-modified"}

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

var rootMenu = func() *menu {
	disk := &menu{path: "disk", verbs: set("add", "print", "set", "remove", "find", "monitor-traffic"), props: set(diskProps...)}
	file := &menu{path: "file", verbs: set("print", "remove", "find"), props: set(fileProps...)}
	identity := &menu{path: "system identity", verbs: set("print")}
	resource := &menu{path: "system resource", verbs: set("print")}
	system := &menu{path: "system", sub: map[string]*menu{"identity": identity, "resource": resource}}
	return &menu{sub: map[string]*menu{"disk": disk, "file": file, "system": system}}
}()

// command is one parsed console command line.
type command struct {
	menu    *menu
	verb    string
	verbCol int
	args    []arg
	where   cond // nil without a where clause
}

// arg is an unnamed (name == "") or named argument.
type arg struct {
	name string
	col  int // column of the name, or of the value when unnamed
	val  value
}

// value is a literal or a [find] sub-expression.
type value struct {
	text string
	find *findExpr
	col  int
}

type findExpr struct {
	menu *menu
	cond cond // nil selects every item
	col  int
}

// scanner walks one command line, tracking the column for error texts.
type scanner struct {
	s string
	i int
}

func (sc *scanner) col() int   { return sc.i + 1 }
func (sc *scanner) eof() bool  { return sc.i >= len(sc.s) }
func (sc *scanner) peek() byte { return sc.s[sc.i] }

func (sc *scanner) skipSpace() {
	for sc.i < len(sc.s) && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t') {
		sc.i++
	}
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func (sc *scanner) readName() string {
	start := sc.i
	for sc.i < len(sc.s) && isNameChar(sc.s[sc.i]) {
		sc.i++
	}
	return sc.s[start:sc.i]
}

// peekWord returns the name at the cursor without consuming it.
func (sc *scanner) peekWord() string {
	save := sc.i
	w := sc.readName()
	sc.i = save
	return w
}

// parseCommand parses one console line. It never panics on any input;
// every rejection is a *cliError carrying the console's text.
func parseCommand(line string) (*command, error) {
	// A trailing line break ends the line; one inside it would start a
	// second command, which the fake refuses.
	line = strings.TrimRight(line, "\r\n")
	sc := &scanner{s: line}
	sc.skipSpace()
	m, verb, verbCol, err := sc.parsePath(rootMenu)
	if err != nil {
		return nil, err
	}
	cmd := &command{menu: m, verb: verb, verbCol: verbCol}
	if verb == "" {
		return cmd, nil // a bare menu path only changes the console's menu
	}
	for {
		sc.skipSpace()
		if sc.eof() {
			return cmd, nil
		}
		c := sc.peek()
		col := sc.col()
		switch {
		case c == '[' || c == '"':
			v, err := sc.readValue(m, false)
			if err != nil {
				return nil, err
			}
			cmd.args = append(cmd.args, arg{col: col, val: v})
		case isNameChar(c):
			name := sc.readName()
			if !sc.eof() && sc.peek() == '=' {
				sc.i++
				v, err := sc.readValue(m, false)
				if err != nil {
					return nil, err
				}
				cmd.args = append(cmd.args, arg{name: name, col: col, val: v})
				continue
			}
			if name == "where" && verb == "print" && m.props != nil {
				c, err := sc.parseCond(m, 0)
				if err != nil {
					return nil, err
				}
				if c == nil {
					c = allCond{}
				}
				cmd.where = c
				if !sc.eof() {
					return nil, errEnd(sc.col())
				}
				return cmd, nil
			}
			// An unnamed value such as a file name runs to whitespace.
			sc.i = col - 1
			v, err := sc.readValue(m, false)
			if err != nil {
				return nil, err
			}
			cmd.args = append(cmd.args, arg{col: col, val: v})
		default:
			return nil, charError(c, col)
		}
	}
}

// charError is the console's complaint about a character that cannot
// appear where it stands: ';' would end the command (the fake runs one
// command per line), everything else is a syntax error.
func charError(c byte, col int) *cliError {
	if c == ';' {
		return errEnd(col)
	}
	return errSyntax(col)
}

// parsePath reads a menu path and a verb, starting at from (or at the root
// when the path begins with '/'). Both "/disk add" and "/disk/add" work.
func (sc *scanner) parsePath(from *menu) (*menu, string, int, error) {
	m := from
	if !sc.eof() && sc.peek() == '/' {
		m = rootMenu
		sc.i++
	}
	for {
		sc.skipSpace()
		if sc.eof() {
			if m == rootMenu {
				return nil, "", 0, errCmdName(sc.col())
			}
			return m, "", 0, nil
		}
		col := sc.col()
		w := sc.readName()
		if w == "" {
			return nil, "", 0, errCmdName(col)
		}
		if sub, ok := m.sub[w]; ok {
			m = sub
			if !sc.eof() && sc.peek() == '/' {
				sc.i++
			}
			continue
		}
		if m.verbs[w] {
			if !sc.eof() && sc.peek() != ' ' && sc.peek() != '\t' && sc.peek() != ']' {
				return nil, "", 0, charError(sc.peek(), sc.col())
			}
			return m, w, col, nil
		}
		return nil, "", 0, errBadName(w, col)
	}
}

// readValue reads a quoted string, a [find] sub-expression or an unquoted
// run. In a condition (inCond) an unquoted run also stops at ')' and ']'.
func (sc *scanner) readValue(m *menu, inCond bool) (value, error) {
	col := sc.col()
	if sc.eof() {
		return value{col: col}, nil
	}
	switch sc.peek() {
	case '"':
		s, err := sc.readQuoted()
		if err != nil {
			return value{}, err
		}
		if !sc.eof() {
			c := sc.peek()
			if c != ' ' && c != '\t' && !(inCond && (c == ')' || c == ']')) {
				return value{}, charError(c, sc.col())
			}
		}
		return value{text: s, col: col}, nil
	case '[':
		if inCond {
			// Nested sub-expressions are not needed by any client and
			// would make the recursion depth input-controlled.
			return value{}, errSyntax(col)
		}
		f, err := sc.parseFind(m)
		if err != nil {
			return value{}, err
		}
		return value{find: f, col: col}, nil
	}
	start := sc.i
	for !sc.eof() {
		c := sc.peek()
		if c == ' ' || c == '\t' {
			break
		}
		if inCond && (c == ')' || c == ']') {
			break
		}
		switch {
		case c < 0x20 || c == 0x7f, c == ';', c == '"', c == '\\', c == '$', c == '[', c == ']',
			c == '{', c == '}', c == '(', c == ')', c == '?', c == '`':
			return value{}, charError(c, sc.col())
		}
		sc.i++
	}
	return value{text: sc.s[start:sc.i], col: col}, nil
}

// readQuoted reads a "..." string with RouterOS escapes. An unescaped '$'
// starts a variable reference; the fake never expands it and refuses it.
func (sc *scanner) readQuoted() (string, error) {
	open := sc.col()
	sc.i++
	var b strings.Builder
	for {
		if sc.eof() {
			return "", errSyntax(open)
		}
		c := sc.peek()
		switch {
		case c == '"':
			sc.i++
			return b.String(), nil
		case c == '$':
			return "", errSyntax(sc.col())
		case c < 0x20 || c == 0x7f:
			return "", errSyntax(sc.col())
		case c == '\\':
			esc := sc.col()
			sc.i++
			if sc.eof() {
				return "", errSyntax(open)
			}
			e := sc.peek()
			sc.i++
			switch e {
			case '"', '\\', '$', '?':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case '_':
				b.WriteByte(' ')
			default:
				if sc.i < len(sc.s) && isHex(e) && isHex(sc.s[sc.i]) {
					n, _ := strconv.ParseUint(string([]byte{e, sc.s[sc.i]}), 16, 8)
					sc.i++
					b.WriteByte(byte(n))
					continue
				}
				return "", errSyntax(esc)
			}
		default:
			b.WriteByte(c)
			sc.i++
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// parseFind reads "[find <condition>]" (also "[find where ...]" and an
// absolute "[/disk find ...]").
func (sc *scanner) parseFind(m *menu) (*findExpr, error) {
	col := sc.col()
	sc.i++ // '['
	sc.skipSpace()
	fm, verb, verbCol, err := sc.parsePath(m)
	if err != nil {
		return nil, err
	}
	if verb == "" {
		return nil, errCmdName(sc.col())
	}
	if verb != "find" {
		// Other commands are valid RouterOS but return nothing usable as
		// an item list; the fake supports only find.
		return nil, errBadName(verb, verbCol)
	}
	sc.skipSpace()
	if sc.peekWord() == "where" {
		sc.readName()
	}
	c, err := sc.parseCond(fm, ']')
	if err != nil {
		return nil, err
	}
	if sc.eof() || sc.peek() != ']' {
		if sc.eof() {
			return nil, errSyntax(col)
		}
		return nil, errEnd(sc.col())
	}
	sc.i++
	if !sc.eof() && sc.peek() != ' ' && sc.peek() != '\t' {
		return nil, charError(sc.peek(), sc.col())
	}
	return &findExpr{menu: fm, cond: c, col: col}, nil
}

// cond is a where/find condition evaluated against one item's properties.
type cond interface {
	eval(p props) bool
}

type allCond struct{}
type notCond struct{ c cond }
type andCond struct{ a, b cond }
type orCond struct{ a, b cond }
type cmpCond struct {
	key, op, val string
	re           *regexp.Regexp
}

func (allCond) eval(props) bool     { return true }
func (c notCond) eval(p props) bool { return !c.c.eval(p) }
func (c andCond) eval(p props) bool { return c.a.eval(p) && c.b.eval(p) }
func (c orCond) eval(p props) bool  { return c.a.eval(p) || c.b.eval(p) }

func (c cmpCond) eval(p props) bool {
	v := p.get(c.key)
	switch c.op {
	case "=":
		return v.equal(c.val)
	case "!=":
		return !v.equal(c.val)
	case "~":
		return c.re.MatchString(v.raw)
	default: // bare property: true when set to yes
		return v.raw == "yes" || v.raw == "true"
	}
}

// exactValue returns v when c is exactly "key=v", so that the one item it
// can match is looked up instead of listing every item.
func exactValue(c cond, key string) (string, bool) {
	if c, ok := c.(cmpCond); ok && c.key == key && c.op == "=" {
		return c.val, true
	}
	return "", false
}

// onlyKey reports whether every comparison in c is about key, so that c
// can be evaluated on that property alone.
func onlyKey(c cond, key string) bool {
	switch c := c.(type) {
	case allCond:
		return true
	case notCond:
		return onlyKey(c.c, key)
	case andCond:
		return onlyKey(c.a, key) && onlyKey(c.b, key)
	case orCond:
		return onlyKey(c.a, key) && onlyKey(c.b, key)
	case cmpCond:
		return c.key == key
	}
	return false
}

// parseCond parses a condition up to the end of the line, or up to stop
// (']' inside [find]). It returns nil for an empty condition.
func (sc *scanner) parseCond(m *menu, stop byte) (cond, error) {
	sc.skipSpace()
	if sc.eof() || (stop != 0 && sc.peek() == stop) {
		return nil, nil
	}
	c, err := sc.parseOr(m, stop, 0)
	if err != nil {
		return nil, err
	}
	sc.skipSpace()
	if !sc.eof() && sc.peek() != stop {
		return nil, charErrorOrEnd(sc.peek(), sc.col())
	}
	return c, nil
}

func charErrorOrEnd(c byte, col int) *cliError {
	if c == ')' || c == ']' {
		return errSyntax(col)
	}
	return errEnd(col)
}

const maxCondDepth = 64

func (sc *scanner) parseOr(m *menu, stop byte, depth int) (cond, error) {
	a, err := sc.parseAnd(m, stop, depth)
	if err != nil {
		return nil, err
	}
	for {
		sc.skipSpace()
		if sc.atKeyword("or", "||") {
			b, err := sc.parseAnd(m, stop, depth)
			if err != nil {
				return nil, err
			}
			a = orCond{a, b}
			continue
		}
		return a, nil
	}
}

func (sc *scanner) parseAnd(m *menu, stop byte, depth int) (cond, error) {
	a, err := sc.parseUnary(m, stop, depth)
	if err != nil {
		return nil, err
	}
	for {
		sc.skipSpace()
		if sc.eof() || sc.peek() == stop || sc.peek() == ')' {
			return a, nil
		}
		if w := sc.peekWord(); w == "or" || strings.HasPrefix(sc.s[sc.i:], "||") {
			return a, nil
		}
		// "and" is optional between conditions, as in RouterOS find.
		sc.atKeyword("and", "&&")
		b, err := sc.parseUnary(m, stop, depth)
		if err != nil {
			return nil, err
		}
		a = andCond{a, b}
	}
}

// atKeyword consumes word or sym when it is next.
func (sc *scanner) atKeyword(word, sym string) bool {
	if strings.HasPrefix(sc.s[sc.i:], sym) {
		sc.i += len(sym)
		return true
	}
	save := sc.i
	if sc.readName() == word {
		return true
	}
	sc.i = save
	return false
}

func (sc *scanner) parseUnary(m *menu, stop byte, depth int) (cond, error) {
	if depth > maxCondDepth {
		return nil, errSyntax(sc.col())
	}
	sc.skipSpace()
	if sc.eof() {
		return nil, errSyntax(sc.col())
	}
	switch c := sc.peek(); {
	case c == '!':
		sc.i++
		x, err := sc.parseUnary(m, stop, depth+1)
		if err != nil {
			return nil, err
		}
		return notCond{x}, nil
	case c == '(':
		open := sc.col()
		sc.i++
		x, err := sc.parseOr(m, stop, depth+1)
		if err != nil {
			return nil, err
		}
		sc.skipSpace()
		if sc.eof() || sc.peek() != ')' {
			return nil, errSyntax(open)
		}
		sc.i++
		return x, nil
	case isNameChar(c):
		return sc.parseCmp(m)
	default:
		return nil, charError(c, sc.col())
	}
}

func (sc *scanner) parseCmp(m *menu) (cond, error) {
	col := sc.col()
	key := sc.readName()
	if key == "and" || key == "or" || !m.props[key] {
		return nil, errSyntax(col)
	}
	if sc.eof() {
		return cmpCond{key: key}, nil
	}
	var op string
	switch {
	case strings.HasPrefix(sc.s[sc.i:], "!="):
		op = "!="
	case sc.peek() == '=' || sc.peek() == '~':
		op = sc.s[sc.i : sc.i+1]
	case sc.peek() == ' ' || sc.peek() == '\t' || sc.peek() == ')' || sc.peek() == ']':
		return cmpCond{key: key}, nil
	default:
		return nil, charError(sc.peek(), sc.col())
	}
	sc.i += len(op)
	v, err := sc.readValue(m, true)
	if err != nil {
		return nil, err
	}
	c := cmpCond{key: key, op: op, val: v.text}
	if op == "~" {
		re, err := regexp.Compile(v.text)
		if err != nil {
			return nil, errSyntax(v.col)
		}
		c.re = re
	}
	return c, nil
}
