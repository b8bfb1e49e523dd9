package rdscsi

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/internal/routeros"
	"github.com/srvlab/rds-csi/rdscsi/nvme"
)

// TestParamsOneTable proves that StorageClass parameters, the volume
// context read back on publish and the node's target parsing agree on
// every key: the same values pass, the same values fail.
func TestParamsOneTable(t *testing.T) {
	o := &controllerOptions{volumePath: "/storage-pool/k8s", nvmeAddress: "10.0.0.5", nvmePort: DefaultNVMePort}
	cases := []struct {
		key        string
		good, bad  string
		nodeReads  bool // the node parses this key into its Target
		wantParams func(volumeParams) bool
	}{
		{ParamVolumePath, "/storage-pool/other", "relative/path", false, func(p volumeParams) bool { return p.volumePath == "/storage-pool/other" }},
		{ParamNVMeAddress, "rds.example.net", "bad host!", true, func(p volumeParams) bool { return p.address == "rds.example.net" }},
		{ParamNVMePort, "4421", "0", true, func(p volumeParams) bool { return p.port == 4421 }},
		{ParamCtrlLossTmo, "-1", "-2", true, func(p volumeParams) bool { return p.tunables[ParamCtrlLossTmo] == "-1" }},
		{ParamReconnectDelay, "05", "0", true, func(p volumeParams) bool { return p.tunables[ParamReconnectDelay] == "5" }},
		{ParamKeepAliveTmo, "10", "soon", true, func(p volumeParams) bool { return p.tunables[ParamKeepAliveTmo] == "10" }},
		{ParamMigrationTimeout, "120", "0", false, func(p volumeParams) bool { return p.migrationTimeout == 120*time.Second }},
	}
	if len(cases) != len(paramSetters) {
		t.Fatalf("%d keys tested, %d in paramSetters", len(cases), len(paramSetters))
	}
	for _, tc := range cases {
		if _, ok := paramSetters[tc.key]; !ok {
			t.Errorf("%s missing from paramSetters", tc.key)
		}
		for name, parse := range map[string]func(map[string]string) (volumeParams, error){
			"parameters": o.parseVolumeParams,
			"context":    o.parseVolumeContext,
		} {
			p, err := parse(map[string]string{tc.key: tc.good})
			if err != nil || !tc.wantParams(p) {
				t.Errorf("%s %s=%q: %+v, %v", name, tc.key, tc.good, p, err)
			}
			if _, err := parse(map[string]string{tc.key: tc.bad}); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s %s=%q accepted: %v", name, tc.key, tc.bad, err)
			}
		}
		if tc.nodeReads {
			vc := map[string]string{ParamNVMeAddress: "10.0.0.5", tc.key: tc.bad}
			if _, err := nodeTarget("pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13", nil, vc); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("node accepted %s=%q: %v", tc.key, tc.bad, err)
			}
		}
	}

	// Unknown keys: refused in a StorageClass, ignored in a context; the
	// CO's reserved keys are ignored by both.
	if _, err := o.parseVolumeParams(map[string]string{"fsType": "xfs"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown parameter accepted: %v", err)
	}
	if _, err := o.parseVolumeContext(map[string]string{"fsType": "xfs", ContextNQN: "x"}); err != nil {
		t.Errorf("context with foreign keys refused: %v", err)
	}
	for name, parse := range map[string]func(map[string]string) (volumeParams, error){
		"parameters": o.parseVolumeParams, "context": o.parseVolumeContext,
	} {
		if _, err := parse(map[string]string{"csi.storage.k8s.io/pvc/name": "data"}); err != nil {
			t.Errorf("%s: reserved key refused: %v", name, err)
		}
	}
}

// TestParamsRoundTrip: what the controller stores in the volume context is
// read back as the same parameters, and the node connects with the same
// settings.
func TestParamsRoundTrip(t *testing.T) {
	o := &controllerOptions{volumePath: "/storage-pool/k8s", nvmeAddress: "10.0.0.5", nvmePort: DefaultNVMePort}
	p, err := o.parseVolumeParams(map[string]string{
		ParamVolumePath: "/storage-pool/other", ParamNVMeAddress: "rds.example.net", ParamNVMePort: "4421",
		ParamCtrlLossTmo: "-1", ParamReconnectDelay: "5", ParamKeepAliveTmo: "10", ParamMigrationTimeout: "120",
	})
	if err != nil {
		t.Fatal(err)
	}
	id := "pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13"
	vc := p.volumeContext(NQN(id), p.port)
	back, err := o.parseVolumeContext(vc)
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Errorf("read back %+v, %v; want %+v", back, err, p)
	}
	tgt, err := nodeTarget(id, nil, vc)
	want := nvme.Target{Address: "rds.example.net", Port: 4421, NQN: NQN(id), CtrlLossTmo: -1, ReconnectDelay: 5, KeepAliveTmo: 10}
	if err != nil || tgt != want {
		t.Errorf("node target %+v, %v; want %+v", tgt, err, want)
	}
}

// nvme keeps its default prefix without importing rdscsi; it must admit
// exactly the NQNs of this package's volumes.
func TestNQNPrefixMatchesConnector(t *testing.T) {
	if want := NQNPrefix + volumePrefix; nvme.DefaultNQNPrefix != want {
		t.Fatalf("nvme.DefaultNQNPrefix = %q, want %q", nvme.DefaultNQNPrefix, want)
	}
}

// TestCheckVolumePath: volumePath is judged by the validators the client
// and the fake share (internal/routeros), so a directory accepted here is
// one whose backing files the device can be asked to create; a refusal
// names the parameter and shows what a valid value looks like.
func TestCheckVolumePath(t *testing.T) {
	for in, want := range map[string]string{
		"/storage-pool/k8s":   "/storage-pool/k8s",
		"/storage-pool/k8s//": "/storage-pool/k8s",
		"/Pool_1/a.b/c-d":     "/Pool_1/a.b/c-d",
	} {
		got, err := checkVolumePath(in)
		if err != nil || got != want {
			t.Errorf("checkVolumePath(%q) = %q, %v; want %q", in, got, err, want)
			continue
		}
		// The longest backing file written below it is a path RouterOS
		// takes, on the same pool.
		f := snapshotFilePath(got, SnapshotIDForName("s"), VolumeIDForName("v"), time.Unix(999_999_999_999, 0))
		if pool, err := routeros.PoolOf(f); err != nil || pool != (volumeParams{volumePath: got}).pool() {
			t.Errorf("%q: backing file %s on pool %q: %v", in, f, pool, err)
		}
	}
	for _, in := range []string{
		"",
		"/",
		"relative/path",
		"/storage-pool",
		"/storage-pool/../etc",
		"/storage-pool/./k8s",
		"/storage-pool//k8s",
		`/storage-pool/"$x"`,
		"/storage-pool/k 8s",
		"/.hidden/k8s",                         // not a pool name
		"/" + strings.Repeat("p", 64) + "/k8s", // pool name too long
		"/storage-pool/" + strings.Repeat("d", 180), // no room for the file names
	} {
		_, err := checkVolumePath(in)
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("checkVolumePath(%q) accepted: %v", in, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, ParamVolumePath) || !strings.Contains(msg, "/storage-pool/k8s") {
			t.Errorf("checkVolumePath(%q): %q names neither the parameter nor a valid example", in, msg)
		}
	}
}
