package nvme

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	// nvme<ctrl>: a controller.
	ctrlRe = regexp.MustCompile(`^nvme[0-9]+$`)
	// nvme<X>n<ns>: a visible namespace (a multipath head or a
	// non-multipath namespace). Hidden paths nvme<X>c<Y>n<ns> never
	// match.
	nsRe = regexp.MustCompile(`^nvme[0-9]+n([0-9]+)$`)
)

// subsystem is what sysfs shows for one NQN at one moment.
type subsystem struct {
	found       bool
	controllers []controller
	namespaces  []string // visible namespace block devices, best first
}

type controller struct {
	name  string // "nvme3"
	state string // "live", "connecting", "deleting", ...
}

// active reports whether a controller exists that is not going away, so
// that connecting again would only fail with "already connected".
func (s subsystem) active() bool {
	for _, c := range s.controllers {
		if !strings.HasPrefix(c.state, "deleting") && c.state != "dead" {
			return true
		}
	}
	return false
}

// lookup reads sysfs for nqn. It handles native multipath (the visible
// head nvme<subsys>n<ns> lives in the subsystem directory, per-path
// nvme<X>c<Y>n<ns> devices are hidden) and non-multipath (nvme<X>n<ns>
// below controller nvme<X>).
func (c *TCPConnector) lookup(nqn string) (subsystem, error) {
	var s subsystem
	ctrls := map[string]bool{}
	ns := map[string]bool{}

	subsysDir := filepath.Join(c.o.sysfsRoot, "class", "nvme-subsystem")
	subs, err := readDir(subsysDir)
	if err != nil {
		return s, err
	}
	for _, sub := range subs {
		dir := filepath.Join(subsysDir, sub)
		if readAttr(filepath.Join(dir, "subsysnqn")) != nqn {
			continue
		}
		s.found = true
		entries, err := readDir(dir)
		if err != nil {
			return s, err
		}
		for _, e := range entries {
			switch {
			case nsRe.MatchString(e):
				ns[e] = true
			case ctrlRe.MatchString(e):
				ctrls[e] = true
			}
		}
	}

	ctrlDir := filepath.Join(c.o.sysfsRoot, "class", "nvme")
	all, err := readDir(ctrlDir)
	if err != nil {
		return s, err
	}
	for _, c := range all {
		if !ctrlRe.MatchString(c) {
			continue
		}
		dir := filepath.Join(ctrlDir, c)
		if readAttr(filepath.Join(dir, "subsysnqn")) != nqn {
			continue
		}
		s.found = true
		ctrls[c] = true
		entries, err := readDir(dir)
		if err != nil {
			return s, err
		}
		for _, e := range entries {
			if nsRe.MatchString(e) {
				ns[e] = true
			}
		}
	}

	for c := range ctrls {
		state := readAttr(filepath.Join(ctrlDir, c, "state"))
		if state == "" {
			state = "live"
		}
		s.controllers = append(s.controllers, controller{name: c, state: state})
	}
	sort.Slice(s.controllers, func(i, j int) bool { return s.controllers[i].name < s.controllers[j].name })
	for n := range ns {
		s.namespaces = append(s.namespaces, n)
	}
	// Lowest namespace ID first; an RDS subsystem exports one namespace.
	sort.Slice(s.namespaces, func(i, j int) bool {
		a, b := nsid(s.namespaces[i]), nsid(s.namespaces[j])
		if a != b {
			return a < b
		}
		return s.namespaces[i] < s.namespaces[j]
	})
	return s, nil
}

func nsid(name string) int {
	m := nsRe.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// readDir lists the names in dir; a missing directory (nvme modules not
// loaded) is empty.
func readDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nvme: reading %s: %w", dir, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// readAttr returns a sysfs attribute without surrounding space, "" when it
// cannot be read (entries vanish while a controller is torn down).
func readAttr(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
