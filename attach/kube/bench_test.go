package kube_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube"
	"github.com/srvlab/rds-csi/attach/kube/kubetest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// BenchmarkRebuild: Rebuild from 10,000 attached VolumeAttachments (and
// their PersistentVolumes) against a plain List of the same objects from
// the same server, interleaved operation by operation so that noise hits
// both; rebuild/list is the ratio the goal is about (at most 1.5x).
func BenchmarkRebuild(b *testing.B) {
	const volumes = 10000
	s := kubetest.Start(b)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(s.Config())
	if err != nil {
		b.Fatal(err)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	for range 32 {
		wg.Go(func() {
			for i := range work {
				pv := newPV(fmt.Sprintf("pv-%05d", i), fmt.Sprintf("pvc-%05d", i), false, false,
					map[string]string{rdscsi.ParamMigrationTimeout: "300"})
				if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
					once.Do(func() { b.Error(err) })
					continue
				}
				va, err := cs.StorageV1().VolumeAttachments().Create(ctx,
					newVA(fmt.Sprintf("va-%05d", i), driver, pv.Name, fmt.Sprintf("node-%d", i%100), false, time.Time{}), metav1.CreateOptions{})
				if err != nil {
					once.Do(func() { b.Error(err) })
					continue
				}
				va.Status.Attached = true
				if _, err := cs.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
					once.Do(func() { b.Error(err) })
				}
			}
		})
	}
	for i := range volumes {
		work <- i
	}
	close(work)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}

	var list, rebuild time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		vas, err := cs.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		pvs, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		as, err := kube.Rebuild(ctx, cs, driver)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if len(as) != volumes || len(vas.Items) != volumes || len(pvs.Items) != volumes {
			b.Fatalf("rebuilt %d of %d attachments (%d VAs, %d PVs listed)", len(as), volumes, len(vas.Items), len(pvs.Items))
		}
		list += t1.Sub(t0)
		rebuild += t2.Sub(t1)
	}
	b.ReportMetric(float64(list.Milliseconds())/float64(b.N), "list-ms/op")
	b.ReportMetric(float64(rebuild.Milliseconds())/float64(b.N), "rebuild-ms/op")
	b.ReportMetric(float64(rebuild)/float64(list), "rebuild/list")
}
