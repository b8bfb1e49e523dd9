package main

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// No container runtime can run here, so the Dockerfile is checked for what
// can be: the files it copies exist, the final stage installs the tools
// the node plugin runs, and its build command, run as written, makes a
// static binary that reports the version it was given.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continued lines.
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var build string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "COPY ") && !strings.Contains(line, "--from="):
			fields := strings.Fields(line)
			for _, src := range fields[1 : len(fields)-1] {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("COPY of a missing file: %v", err)
				}
			}
		case strings.Contains(line, "go build"):
			build = strings.Join(strings.Fields(line), " ")
		}
	}
	for _, pkg := range []string{"nvme-cli", "e2fsprogs", "xfsprogs", "util-linux", "mount"} {
		if !regexp.MustCompile(`install[^\n]*\b` + pkg + `\b`).MatchString(text) {
			t.Errorf("the image does not install %s", pkg)
		}
	}
	m := regexp.MustCompile(`(CGO_ENABLED=0) go build (.*) -o \S+ (\./examples/rds-csi-plugin)`).FindStringSubmatch(build)
	if m == nil {
		t.Fatalf("no static build of ./examples/rds-csi-plugin in %q", build)
	}
	out := filepath.Join(t.TempDir(), "rds-csi-plugin")
	args := strings.ReplaceAll(m[2], "${VERSION}", "v9.8.7")
	cmd := exec.Command("sh", "-c", "go build "+args+" -o "+out+" "+m[3])
	cmd.Dir = root
	cmd.Env = append(os.Environ(), m[1])
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked")
		}
	}
	v, err := exec.Command(out, "--version").Output()
	if err != nil || strings.TrimSpace(string(v)) != "rds-csi-plugin v9.8.7" {
		t.Errorf("--version of the built binary: %q, %v", v, err)
	}
}
