package rdstest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Flags legend printed first by /disk print detail, even when nothing
// matches. No fake disk carries a flag, so entries show none.
const diskLegend = "Flags: X - disabled; B - blocked"

// execute runs one command line and returns what the console prints.
// Errors go to stdout with exit status 1, as RouterOS prints them on the
// terminal.
func (s *Server) execute(line string, width int) result {
	cmd, err := parseCommand(line)
	if err == nil {
		s.st.mu.Lock()
		var out string
		out, err = s.dispatch(cmd, width)
		if mutates(cmd) {
			// Saved even after a failure, which may have changed part
			// of a multi-item command.
			if serr := s.st.save(); serr != nil {
				s.log.Error("rdstest: save state", "err", serr)
				if err == nil {
					err = failure("could not save state")
				}
			}
		}
		s.st.mu.Unlock()
		if err == nil {
			return result{stdout: out, stream: cmd.verb == "monitor-traffic" && !hasFlag(cmd, "once")}
		}
	}
	var ce *cliError
	if !errors.As(err, &ce) {
		ce = failure(err.Error())
	}
	return result{stdout: ce.msg + crlf, status: 1}
}

// mutates reports commands that may change the disk table.
func mutates(cmd *command) bool {
	if cmd.menu.path != "disk" {
		return false
	}
	switch cmd.verb {
	case "add", "set", "remove":
		return true
	}
	return false
}

func hasFlag(cmd *command, flag string) bool {
	for _, a := range cmd.args {
		if a.name == "" && a.val.find == nil && a.val.text == flag {
			return true
		}
	}
	return false
}

// dispatch runs a parsed command; the caller holds s.st.mu.
func (s *Server) dispatch(cmd *command, width int) (string, error) {
	if cmd.verb == "" || cmd.verb == "find" {
		return "", nil // a menu change, or find outside a script: silent
	}
	switch cmd.menu.path + " " + cmd.verb {
	case "disk print":
		return s.printDisks(cmd, width)
	case "disk add":
		return "", s.diskAdd(cmd)
	case "disk set":
		return "", s.diskSet(cmd)
	case "disk remove":
		return "", s.diskRemove(cmd)
	case "disk monitor-traffic":
		return s.monitorTraffic(cmd)
	case "file print":
		return s.printFiles(cmd, width)
	case "file remove":
		return "", s.fileRemove(cmd)
	case "system identity print":
		if err := noArgs(cmd); err != nil {
			return "", err
		}
		return keyValueLines([][2]string{{"name", s.opts.identity}}, false), nil
	case "system resource print":
		if err := noArgs(cmd); err != nil {
			return "", err
		}
		return s.resource(), nil
	}
	return "", errBadName(cmd.verb, cmd.verbCol)
}

func noArgs(cmd *command) error {
	for _, a := range cmd.args {
		if a.name != "" || a.val.text != "without-paging" {
			return errEnd(a.col)
		}
	}
	return nil
}

// printFlags reads print's unnamed flags; anything else is refused.
func printFlags(cmd *command) (map[string]bool, error) {
	flags := map[string]bool{}
	for _, a := range cmd.args {
		switch {
		case a.name == "" && a.val.find == nil &&
			(a.val.text == "detail" || a.val.text == "terse" || a.val.text == "as-value" ||
				a.val.text == "without-paging" || a.val.text == "count-only"):
			flags[a.val.text] = true
		default:
			return nil, errEnd(a.col)
		}
	}
	return flags, nil
}

// render prints items in the requested print mode.
func render(items []props, flags map[string]bool, legend string, prefixW, indent, width int) string {
	switch {
	case flags["as-value"]:
		return "" // as-value yields data only in script context
	case flags["count-only"]:
		return strconv.Itoa(len(items)) + crlf
	}
	var b strings.Builder
	if flags["terse"] {
		for i, it := range items {
			fmt.Fprintf(&b, "%2d   ", i)
			for j, p := range it {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(p.terseText())
			}
			b.WriteString(crlf)
		}
		return b.String()
	}
	// Plain print would be a table on the device; the fake prints detail.
	if legend != "" {
		b.WriteString(legend + crlf)
	}
	for i, it := range items {
		prefix := fmt.Sprintf("%2d", i)
		prefix += strings.Repeat(" ", max(1, prefixW-len(prefix)))
		wrapEntry(prefix, indent, width, it, &b)
		b.WriteString(crlf)
	}
	return b.String()
}

func (s *Server) printDisks(cmd *command, width int) (string, error) {
	flags, err := printFlags(cmd)
	if err != nil {
		return "", err
	}
	var items []props
	for _, d := range s.st.disks {
		if p, ok := s.matchDisk(cmd.where, d); ok {
			items = append(items, p)
		}
	}
	return render(items, flags, diskLegend, 4, 15, width), nil
}

// matchDisk evaluates a where or find condition (nil: all) on d and
// returns d's properties when it matches. A condition on the slot alone,
// as every lookup by slot is, is decided without building the item,
// which stats the backing file: a read of one disk then costs the same
// however many disks there are.
func (s *Server) matchDisk(c cond, d *disk) (props, bool) {
	if c != nil && onlyKey(c, "slot") && !c.eval(props{{key: "slot", raw: d.slot}}) {
		return nil, false
	}
	p := s.st.diskItem(d)
	if c == nil || c.eval(p) {
		return p, true
	}
	return nil, false
}

func (s *Server) printFiles(cmd *command, width int) (string, error) {
	flags, err := printFlags(cmd)
	if err != nil {
		return "", err
	}
	var items []props
	for _, e := range s.st.filesFor(cmd.where) {
		p := fileItem(e)
		if cmd.where == nil || cmd.where.eval(p) {
			items = append(items, p)
		}
	}
	return render(items, flags, "", 5, 5, width), nil
}

// findDisks evaluates [find ...] against the disk list.
func (s *Server) findDisks(f *findExpr, argName string) ([]*disk, error) {
	if f.menu.path != "disk" {
		return nil, errValue(argName)
	}
	var out []*disk
	for _, d := range s.st.disks {
		if _, ok := s.matchDisk(f.cond, d); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// diskItems resolves an item argument: [find ...] (empty result is fine)
// or slot names separated by commas (each must exist).
func (s *Server) diskItems(v value, argName string) ([]*disk, error) {
	if v.find != nil {
		return s.findDisks(v.find, argName)
	}
	var out []*disk
	for _, name := range strings.Split(v.text, ",") {
		d := s.st.diskBySlot(name)
		if d == nil {
			return nil, failure(reasonNoSuchItem)
		}
		out = append(out, d)
	}
	return out, nil
}

func parseBool(s string) (bool, bool) {
	switch s {
	case "yes", "true":
		return true, true
	case "no", "false":
		return false, true
	}
	return false, false
}

func validText(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// exportArgs holds the nvme-tcp-* arguments of add and set.
type exportArgs struct {
	export, hasExport bool
	port              int
	nqn               string
}

// exportArg reads one nvme-tcp-* argument; false if a is not one.
func exportArg(a arg, e *exportArgs) (bool, error) {
	switch a.name {
	case "nvme-tcp-export":
		b, ok := parseBool(a.val.text)
		if !ok || a.val.find != nil {
			return true, errValue(a.name)
		}
		e.export, e.hasExport = b, true
	case "nvme-tcp-server-port":
		n, err := strconv.Atoi(a.val.text)
		if err != nil || n < 1 || n > 65535 || a.val.find != nil {
			return true, errValue(a.name)
		}
		e.port = n
	case "nvme-tcp-server-nqn":
		t := a.val.text
		if !validText(t) || len(t) > 223 || !strings.HasPrefix(t, "nqn.") || strings.ContainsAny(t, " \t") || a.val.find != nil {
			return true, errValue(a.name)
		}
		e.nqn = t
	default:
		return false, nil
	}
	return true, nil
}

func (s *Server) diskAdd(cmd *command) error {
	var (
		spec            addSpec
		e               exportArgs
		hasType, isCopy bool
	)
	for _, a := range cmd.args {
		if a.name == "" {
			return errEnd(a.col)
		}
		if ok, err := exportArg(a, &e); ok {
			if err != nil {
				return err
			}
			continue
		}
		if a.val.find != nil && a.name != "copy-from" {
			return errValue(a.name)
		}
		switch a.name {
		case "type":
			if a.val.text != "file" {
				return errNoMatch("type")
			}
			hasType = true
		case "file-path":
			if !validText(a.val.text) {
				return errValue(a.name)
			}
			spec.filePath = a.val.text
		case "file-size":
			n, err := parseSize(a.val.text)
			if err != nil || n <= 0 {
				return errValue(a.name)
			}
			spec.size = n
		case "slot":
			if !validText(a.val.text) {
				return errValue(a.name)
			}
			spec.slot = a.val.text
		case "copy-from":
			src, err := s.diskItems(a.val, a.name)
			if err != nil {
				return err
			}
			switch {
			case len(src) == 0:
				return failure(reasonNoSuchItem)
			case len(src) > 1:
				return errValue(a.name)
			case src[0].typ != "file" || src[0].filePath == "":
				return failure(reasonNotFileDisk)
			}
			spec.copyFrom, isCopy = src[0], true
		default:
			return errEnd(a.col)
		}
	}
	switch {
	case !hasType:
		return failure(reasonNoType)
	case spec.filePath == "":
		return failure(reasonNoPath)
	case spec.size == 0 && !isCopy:
		return failure(reasonNoSize)
	}
	if spec.slot == "" {
		for i := 1; ; i++ {
			if spec.slot = "file" + strconv.Itoa(i); s.st.diskBySlot(spec.slot) == nil {
				break
			}
		}
	}
	if e.export {
		spec.export = true
		spec.port = orInt(e.port, 4420)
		spec.nqn = e.nqn
		if spec.nqn == "" {
			spec.nqn = "nqn.2000-02.com.mikrotik:" + spec.slot
		}
	}
	if err := s.st.add(spec); err != nil {
		return err
	}
	return nil
}

// orInt returns v, or def when v is zero.
func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// itemArgs collects the targets of set/remove from the unnamed arguments.
func (s *Server) itemArgs(cmd *command, resolve func(value) ([]*disk, error)) ([]*disk, bool, error) {
	var out []*disk
	given := false
	for _, a := range cmd.args {
		if a.name != "" {
			continue
		}
		given = true
		ds, err := resolve(a.val)
		if err != nil {
			return nil, given, err
		}
		out = append(out, ds...)
	}
	return out, given, nil
}

func (s *Server) diskSet(cmd *command) error {
	var (
		e       exportArgs
		size    int64
		hasSize bool
	)
	for _, a := range cmd.args {
		if a.name == "" {
			continue
		}
		if ok, err := exportArg(a, &e); ok {
			if err != nil {
				return err
			}
			continue
		}
		if a.name != "file-size" {
			return errEnd(a.col)
		}
		n, err := parseSize(a.val.text)
		if err != nil || n <= 0 || a.val.find != nil {
			return errValue(a.name)
		}
		size, hasSize = n, true
	}
	targets, given, err := s.itemArgs(cmd, func(v value) ([]*disk, error) { return s.diskItems(v, "numbers") })
	if err != nil {
		return err
	}
	if !given {
		return errValue("numbers")
	}
	setExport := e.hasExport || e.port != 0 || e.nqn != ""
	if setExport {
		for _, d := range targets {
			if d.pool != nil {
				return failure(reasonNotFileDisk)
			}
			if e.nqn != "" && (e.nqn != d.nqn || !d.export) && s.st.nqnInUse(e.nqn) {
				return failure(reasonNQNInUse)
			}
		}
	}
	if hasSize {
		if err := s.st.resize(targets, size); err != nil {
			return err
		}
	}
	if setExport {
		for _, d := range targets {
			if e.hasExport {
				d.export = e.export
			}
			if e.nqn != "" {
				d.nqn = e.nqn
			}
			if e.port != 0 {
				d.port = e.port
			}
			if d.export {
				d.port = orInt(d.port, 4420)
				d.nqn = orStr(d.nqn, "nqn.2000-02.com.mikrotik:"+d.slot)
			}
		}
	}
	return nil
}

func orStr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func (s *Server) diskRemove(cmd *command) error {
	for _, a := range cmd.args {
		if a.name != "" {
			return errEnd(a.col)
		}
	}
	targets, given, err := s.itemArgs(cmd, func(v value) ([]*disk, error) { return s.diskItems(v, "numbers") })
	if err != nil {
		return err
	}
	if !given {
		return errValue("numbers")
	}
	return s.st.removeDisks(targets)
}

func (s *Server) fileRemove(cmd *command) error {
	var names []string
	given := false
	for _, a := range cmd.args {
		if a.name != "" {
			return errEnd(a.col)
		}
		given = true
		if f := a.val.find; f != nil {
			if f.menu.path != "file" {
				return errValue("numbers")
			}
			for _, e := range s.st.filesFor(f.cond) {
				if f.cond == nil || f.cond.eval(fileItem(e)) {
					names = append(names, e.name)
				}
			}
			continue
		}
		for _, n := range strings.Split(a.val.text, ",") {
			if _, found := s.st.file(n); !found {
				return failure(reasonNoSuchItem)
			}
			names = append(names, n)
		}
	}
	if !given {
		return errValue("numbers")
	}
	return s.st.removeFiles(names)
}

// monitorTraffic prints one snapshot in the captured layout
// (rdsclient/docs/device.md, "Output format").
// The keys of the capture keep its order; where the further keys sit in
// the real output is not captured, so the fake chooses: merges after a
// direction's per-second rate, as Linux disk statistics put merges after
// operations, then the discard and flush groups after the write group.
func (s *Server) monitorTraffic(cmd *command) (string, error) {
	var target *disk
	for _, a := range cmd.args {
		switch {
		case a.name != "":
			return "", errEnd(a.col)
		case a.val.find == nil && a.val.text == "once":
		case target == nil:
			ds, err := s.diskItems(a.val, "numbers")
			if err != nil {
				return "", err
			}
			if len(ds) == 0 {
				return "", failure(reasonNoSuchItem)
			}
			target = ds[0]
		default:
			return "", errEnd(a.col)
		}
	}
	if target == nil {
		return "", failure(reasonNoSuchItem)
	}
	t := s.trafficOf(target.slot)
	kv := [][2]string{
		{"slot", target.slot},
		{"read-ops", groupInt(t.ReadOps)},
		{"read-ops-per-second", groupInt(t.readOpsPerSec)},
		{"read-merges", groupInt(t.ReadMerges)},
		{"read-bytes", groupInt(t.ReadBytes)},
		{"read-rate", formatRate(t.ReadRateBits)},
		{"read-time", "0ms"},
		{"write-ops", groupInt(t.WriteOps)},
		{"write-ops-per-second", groupInt(t.writeOpsPerSec)},
		{"write-merges", groupInt(t.WriteMerges)},
		{"write-bytes", groupInt(t.WriteBytes)},
		{"write-rate", formatRate(t.WriteRateBits)},
		{"write-time", "0ms"},
		{"discard-ops", groupInt(t.DiscardOps)},
		{"discard-merges", groupInt(t.DiscardMerges)},
		{"discard-bytes", groupInt(t.DiscardBytes)},
		{"discard-time", "0ms"},
		{"flush-ops", groupInt(t.FlushOps)},
		{"flush-time", "0ms"},
		{"in-flight-ops", groupInt(t.InFlightOps)},
		{"active-time", "0ms"},
		{"wait-time", "0ms"},
	}
	return keyValueLines(kv, true), nil
}

func (s *Server) resource() string {
	kv := [][2]string{
		{"uptime", formatUptime(time.Since(s.started))},
		{"version", "7.16 (stable)"},
		{"build-time", "2024-09-20 13:00:27"},
		{"factory-software", "7.15.3"},
		{"free-memory", humanSize(30 << 30)},
		{"total-memory", humanSize(32 << 30)},
		{"cpu", "ARM64"},
		{"cpu-count", "16"},
		{"cpu-frequency", "2000MHz"},
		{"cpu-load", "1%"},
		{"free-hdd-space", humanSize(96 << 20)},
		{"total-hdd-space", humanSize(128 << 20)},
		{"write-sect-since-reboot", "4121"},
		{"write-sect-total", "98112"},
		{"architecture-name", "arm64"},
		{"board-name", "RDS2216-2XG-4S+4XS-2XQ"},
		{"platform", "MikroTik"},
	}
	return keyValueLines(kv, false)
}

// formatUptime renders a duration as RouterOS does: 15d2h45m30s.
func formatUptime(d time.Duration) string {
	sec := int64(d / time.Second)
	parts := []struct {
		n    int64
		unit string
	}{{sec / 86400, "d"}, {sec / 3600 % 24, "h"}, {sec / 60 % 60, "m"}, {sec % 60, "s"}}
	var b strings.Builder
	for i, p := range parts {
		if p.n > 0 || b.Len() > 0 || i == len(parts)-1 {
			fmt.Fprintf(&b, "%d%s", p.n, p.unit)
		}
	}
	return b.String()
}
