package rdstest

import (
	"fmt"
	"testing"
)

// TestSlotFastPathAgrees checks that deciding a slot-only condition from
// the slot alone selects exactly what evaluating the whole item does.
func TestSlotFastPathAgrees(t *testing.T) {
	s := newTestServer(t)
	for _, slot := range []string{"pvc-a", "pvc-b", "snap-a", "pvc-10"} {
		run(t, s, fmt.Sprintf("/disk add type=file file-path=/storage-pool/k8s/%s.img file-size=1M slot=%s", slot, slot), 80)
	}
	s.AddForeignDisk(ForeignDisk{Slot: "nvme1", Type: "nvme", SizeBytes: 1 << 30})
	conds := []string{
		`slot=pvc-a`, `slot="pvc-b"`, `slot=none`, `slot~"^pvc-"`, `slot~"-a"`, `!(slot=pvc-a)`,
		`slot!=pvc-a`, `slot=pvc-a or slot=snap-a`, `slot~"pvc" and !slot~"10"`, `slot=storage-pool`,
		`slot=pvc-a and size=1M`, `type=file`, `slot`,
	}
	for _, c := range conds {
		cmd, err := parseCommand("/disk print where " + c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		s.st.mu.Lock()
		var fast, slow []string
		for _, d := range s.st.disks {
			if _, ok := s.matchDisk(cmd.where, d); ok {
				fast = append(fast, d.slot)
			}
			if cmd.where.eval(s.st.diskItem(d)) {
				slow = append(slow, d.slot)
			}
		}
		s.st.mu.Unlock()
		if fmt.Sprint(fast) != fmt.Sprint(slow) {
			t.Errorf("where %s: fast path %v, full evaluation %v", c, fast, slow)
		}
	}
}

// BenchmarkPrintOneDisk measures the fake's own cost of the command behind
// rdsclient.Client.Disk, with one disk and with a thousand, without SSH.
func BenchmarkPrintOneDisk(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("disks=%d", n), func(b *testing.B) {
			s, err := NewServer()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := range n {
				line := fmt.Sprintf("/disk add type=file file-path=/storage-pool/k8s/pvc-%d.img file-size=1M slot=pvc-%d", i, i)
				if r := s.execute(line, 80); r.status != 0 {
					b.Fatal(r.stdout)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				if r := s.execute(`/disk print detail where slot="pvc-0"`, 80); r.status != 0 {
					b.Fatal(r.stdout)
				}
			}
		})
	}
}
