package rdscsi

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseFilePath: whatever a disk's file-path holds, parsing never
// panics, accepts only names made of our IDs, and reads back exactly what
// the writers put in.
func FuzzParseFilePath(f *testing.F) {
	f.Add("/storage-pool/k8s/pvc-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11.img")
	f.Add("/storage-pool/k8s/pvc-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11.from-snap-1d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11.img")
	f.Add("/storage-pool/snaps/snap-1d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11.from-pvc-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11.at-1762936215.img")
	f.Add("/storage-pool/test.img")
	f.Add("pvc-0d6a3b0c-2b9e-4b59-9c3a-6d1f3e9f0a11.img")
	f.Fuzz(func(t *testing.T, p string) {
		pf, ok := parseFilePath(p)
		if !ok {
			return
		}
		if !IsVolumeID(pf.id) && !IsSnapshotID(pf.id) {
			t.Fatalf("%q: id %q", p, pf.id)
		}
		if pf.source != "" && !IsVolumeID(pf.source) && !IsSnapshotID(pf.source) {
			t.Fatalf("%q: source %q", p, pf.source)
		}
		if IsSnapshotID(pf.id) && (!pf.hasAt || !IsVolumeID(pf.source)) {
			t.Fatalf("%q: snapshot without time or source volume: %+v", p, pf)
		}
		if base := p[strings.LastIndex(p, "/")+1:]; !strings.HasPrefix(base, pf.id) {
			t.Fatalf("%q: id not at the start of the base name", p)
		}
		// What the writers produce parses back to the same values.
		var again string
		if pf.hasAt {
			again = snapshotFilePath(pf.dir, pf.id, pf.source, time.Unix(pf.at, 0))
		} else {
			again = volumeFilePath(pf.dir, pf.id, pf.source)
		}
		pf2, ok := parseFilePath(again)
		if !ok || pf2.id != pf.id || pf2.source != pf.source || pf2.at != pf.at {
			t.Fatalf("%q -> %q -> %+v %v", p, again, pf2, ok)
		}
	})
}

// FuzzVolumeIDForName: every name maps to a valid, stable ID, and names
// that are IDs map to themselves.
func FuzzVolumeIDForName(f *testing.F) {
	f.Add("pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13")
	f.Add("PVC-3F1C2A9E-8D47-4B6E-9A51-0C2D7E6F4B13")
	f.Add(`x"]; /system reset-configuration`)
	f.Add("")
	f.Fuzz(func(t *testing.T, name string) {
		id := VolumeIDForName(name)
		if !IsVolumeID(id) || id != VolumeIDForName(name) {
			t.Fatalf("%q -> %q", name, id)
		}
		if IsVolumeID(name) && id != name {
			t.Fatalf("ID %q remapped to %q", name, id)
		}
		if s := SnapshotIDForName(name); !IsSnapshotID(s) {
			t.Fatalf("snapshot %q -> %q", name, s)
		}
	})
}

// FuzzCheckVolumePath: an accepted volumePath is absolute, below a pool,
// clean, and made only of characters safe on the console.
func FuzzCheckVolumePath(f *testing.F) {
	f.Add("/storage-pool/k8s")
	f.Add("/storage-pool/k8s/")
	f.Add("/storage-pool/../etc")
	f.Add(`/storage-pool/"$x"`)
	f.Add("/storage-pool")
	f.Fuzz(func(t *testing.T, v string) {
		p, err := checkVolumePath(v)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Count(p, "/") < 2 || strings.HasSuffix(p, "/") {
			t.Fatalf("%q -> %q", v, p)
		}
		for _, c := range strings.Split(p[1:], "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("%q -> %q: component %q", v, p, c)
			}
		}
		for _, r := range p {
			if !(r == '/' || r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				t.Fatalf("%q -> %q: character %q", v, p, r)
			}
		}
	})
}

// FuzzDecodeToken: tokens round-trip, and anything else is refused
// without panicking; an accepted token always names a valid ID.
func FuzzDecodeToken(f *testing.F) {
	f.Add(encodeToken(tokenVolumes, "pvc-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13"))
	f.Add(encodeToken(tokenSnapshots, "snap-3f1c2a9e-8d47-4b6e-9a51-0c2d7e6f4b13"))
	f.Add("invalid-token")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, kind := range []string{tokenVolumes, tokenSnapshots, tokenHealth} {
			key, err := decodeToken(kind, tok)
			if err != nil || tok == "" {
				continue
			}
			if kind == tokenSnapshots && !IsSnapshotID(key) || kind != tokenSnapshots && !IsVolumeID(key) {
				t.Fatalf("%s token %q -> %q", kind, tok, key)
			}
			if again, err := decodeToken(kind, encodeToken(kind, key)); err != nil || again != key {
				t.Fatalf("round trip %q: %q %v", key, again, err)
			}
		}
	})
}
