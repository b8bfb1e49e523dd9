package rdsclient

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// Independent statements of what may reach the console, written as
// regexps so that the byte-wise validators are checked against a second
// formulation.
var (
	slotRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	pathRE = regexp.MustCompile(`^/[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9._-]+)+$`)
	nqnRE  = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+:[a-z0-9._:-]+$`)
	// Everything a rendered /disk add argument list may contain.
	argsRE = regexp.MustCompile(`^file-path="[^"]+"( file-size=[0-9]+[MG])? slot="[^"]+"( nvme-tcp-export=yes nvme-tcp-server-port=[0-9]+ nvme-tcp-server-nqn="[^"]+")?$`)
	safeRE = regexp.MustCompile(`^[A-Za-z0-9/._:^~+=" -]*$`)
)

func hasDotComponent(p string) bool {
	for _, c := range strings.Split(p, "/") {
		if c == "." || c == ".." {
			return true
		}
	}
	return false
}

func FuzzDiskAddArgs(f *testing.F) {
	f.Add("pvc-1", "/storage-pool/k8s/pvc-1.img", "nqn.2000-02.com.mikrotik:pvc-1", 4420, int64(1<<30), true)
	f.Add("pvc-1", "/storage-pool/k8s/../x.img", "nqn.2000-02.com.mikrotik:pvc-1", 0, int64(1), false)
	f.Add("pvc-1\"", "/storage-pool/k8s/a b.img", "nqn.2000-02.com.mikrotik:PVC", -1, int64(-5), true)
	f.Add("a", "/p/f", "nqn.2014-08.org.nvmexpress:x", 65535, int64(MaxDiskSize), true)
	f.Add("pvc-x", "/storage-pool/$x/y", "nqn.2000-02.com.mikrotik:[x]", 4420, int64(3<<29+1), true)
	f.Fuzz(func(t *testing.T, slot, path, nqn string, port int, size int64, export bool) {
		spec := DiskSpec{Slot: slot, FilePath: path, SizeBytes: size}
		if export {
			spec.Export = &NVMeExport{Port: port, NQN: nqn}
		}
		args, rounded, err := diskAddArgs(spec, false)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !slotRE.MatchString(slot) {
			t.Errorf("slot %q accepted", slot)
		}
		if len(path) > 255 || !pathRE.MatchString(path) || hasDotComponent(path) {
			t.Errorf("path %q accepted", path)
		}
		if export && (len(nqn) > 223 || !nqnRE.MatchString(nqn) || port < 0 || port > 65535) {
			t.Errorf("export %q:%d accepted", nqn, port)
		}
		if size <= 0 || size > MaxDiskSize || rounded < size || rounded-size >= MiB || rounded%MiB != 0 {
			t.Errorf("size %d rounded to %d", size, rounded)
		}
		if !safeRE.MatchString(args) || !argsRE.MatchString(args) {
			t.Errorf("rendered arguments %q", args)
		}
		if !strings.Contains(args, ` slot="`+slot+`"`) || !strings.HasPrefix(args, `file-path="`+path+`"`) {
			t.Errorf("values changed in %q", args)
		}
	})
}

func FuzzFileNames(f *testing.F) {
	for _, s := range []string{"storage-pool/k8s", "/storage-pool/k8s/", "/storage-pool/k8s/x.img", "storage-pool", "..", "/a/../b", "a b", "a\x00b", "/storage-pool//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if name, err := fileName(p); err == nil {
			if !pathRE.MatchString("/"+name) || hasDotComponent(name) || len(name) > 254 || strings.HasPrefix(name, "/") {
				t.Errorf("fileName(%q) = %q accepted", p, name)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("fileName error %v does not wrap ErrInvalid", err)
		}
		if name, err := dirPrefixName(p); err == nil {
			trimmed := strings.TrimSuffix(name, "/")
			if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[A-Za-z0-9._-]+)*$`).MatchString(trimmed) || hasDotComponent(trimmed) || strings.HasPrefix(name, "/") {
				t.Errorf("dirPrefixName(%q) = %q accepted", p, name)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("dirPrefixName error %v does not wrap ErrInvalid", err)
		}
	})
}

func TestMatches(t *testing.T) {
	spec := DiskSpec{Slot: "pvc-1", FilePath: "/p/pvc-1.img", SizeBytes: 3<<29 + 1, Export: &NVMeExport{NQN: "nqn.2000-02.com.mikrotik:pvc-1"}}
	size := RoundUpSize(spec.SizeBytes)
	d := Disk{Slot: "pvc-1", Type: "file", FilePath: "/p/pvc-1.img", SizeBytes: size, Export: &NVMeExport{Port: 4420, NQN: spec.Export.NQN}}
	if !matches(d, spec, size) {
		t.Errorf("identical disk does not match (port 0 means 4420, sizes compare rounded)")
	}
	for name, mutate := range map[string]func(*Disk){
		"size":   func(d *Disk) { d.SizeBytes += MiB },
		"path":   func(d *Disk) { d.FilePath = "/p/other.img" },
		"port":   func(d *Disk) { d.Export = &NVMeExport{Port: 4421, NQN: spec.Export.NQN} },
		"nqn":    func(d *Disk) { d.Export = &NVMeExport{Port: 4420, NQN: "nqn.2000-02.com.mikrotik:x"} },
		"export": func(d *Disk) { d.Export = nil },
	} {
		x := d
		mutate(&x)
		if matches(x, spec, size) {
			t.Errorf("disk with different %s matches", name)
		}
	}
}

func TestParseDiskStrict(t *testing.T) {
	const good = ` 0  type=file slot="pvc-1" size=53 687 091 200 file-path=/storage-pool/pvc-1.img
    nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-1"
`
	cases := map[string]string{
		"no size":      ` 0  type=file slot="pvc-1" file-path=/storage-pool/pvc-1.img`,
		"bad size":     ` 0  type=file slot="pvc-1" size=lots file-path=/storage-pool/pvc-1.img`,
		"no slot":      ` 0  type=file size=1 048 576 file-path=/storage-pool/pvc-1.img`,
		"no file path": ` 0  type=file slot="pvc-1" size=1 048 576`,
		"bad export":   ` 0  type=file slot="pvc-1" size=1 048 576 file-path=/p/x nvme-tcp-export=maybe`,
		"bad port":     ` 0  type=file slot="pvc-1" size=1 048 576 file-path=/p/x nvme-tcp-export=yes nvme-tcp-server-port=99999 nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:x"`,
		"no nqn":       ` 0  type=file slot="pvc-1" size=1 048 576 file-path=/p/x nvme-tcp-export=yes nvme-tcp-server-port=4420`,
		"empty nqn":    ` 0  type=file slot="pvc-1" size=1 048 576 file-path=/p/x nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=""`,
		"missing port": ` 0  type=file slot="pvc-1" size=1 048 576 file-path=/p/x nvme-tcp-export=yes nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:x"`,
	}
	entries, err := routeros.ParseDetail(good, routeros.DefaultWidth)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ParseDetail: %v, %d entries", err, len(entries))
	}
	d, err := parseDisk(entries[0])
	if err != nil || d.SizeBytes != 53687091200 || d.Export == nil || d.Export.Port != 4420 || d.FilePath != "/storage-pool/pvc-1.img" {
		t.Fatalf("parseDisk(good) = %+v, %v", d, err)
	}
	for name, out := range cases {
		entries, err := routeros.ParseDetail(out, routeros.DefaultWidth)
		if err != nil || len(entries) != 1 {
			t.Fatalf("%s: ParseDetail: %v", name, err)
		}
		if d, err := parseDisk(entries[0]); !errors.Is(err, ErrUnexpectedOutput) {
			t.Errorf("%s: parseDisk = %+v, %v; want ErrUnexpectedOutput", name, d, err)
		}
	}
	// Not exported: no Export, whatever else is printed.
	entries, _ = routeros.ParseDetail(` 0  type=file slot="pvc-1" size=1 048 576 file-path=/p/x nvme-tcp-export=no nvme-tcp-server-port=4420`, routeros.DefaultWidth)
	if d, err := parseDisk(entries[0]); err != nil || d.Export != nil {
		t.Errorf("unexported disk = %+v, %v", d, err)
	}
}

func TestKVParserStrict(t *testing.T) {
	p := kvParser{kv: map[string]string{"read-ops": "1 024", "read-rate": "12.8Mbps", "read-time": "5ms"}}
	if p.number("read-ops") != 1024 || p.rate("read-rate") != 12_800_000 || p.duration("read-time") != 5*time.Millisecond || p.err != nil {
		t.Fatalf("kvParser: %v", p.err)
	}
	for _, bad := range []func(*kvParser){
		func(p *kvParser) { p.number("missing") },
		func(p *kvParser) { p.kv["x"] = "1,5"; p.number("x") },
		func(p *kvParser) { p.kv["x"] = "fast"; p.rate("x") },
		func(p *kvParser) { p.kv["x"] = "soon"; p.duration("x") },
	} {
		q := kvParser{kv: map[string]string{}}
		bad(&q)
		if q.err == nil {
			t.Errorf("kvParser accepted a bad field: %v", q.kv)
		}
	}
}
