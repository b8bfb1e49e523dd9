package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/attach/kube/kubetest"
	"github.com/srvlab/rds-csi/rdsclient/rdstest"
	"github.com/srvlab/rds-csi/rdscsi"
)

// holders records, per volume, the node a client was told it may use:
// from ControllerPublish's answer to the ControllerUnpublish request. That
// span lies inside the span in which the plugin held the attachment, so
// two overlapping spans of one RWO volume prove a double attach.
type holders struct {
	mu         sync.Mutex
	on         map[string]string
	violations []string
}

func (h *holders) hold(vol, node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if other, ok := h.on[vol]; ok && other != node {
		h.violations = append(h.violations, fmt.Sprintf("%s published to %s while on %s", vol, node, other))
	}
	h.on[vol] = node
}

func (h *holders) release(vol, node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on[vol] == node {
		delete(h.on, vol)
	}
}

// replica is one controller process of the failover test.
type replica struct {
	*serving
	id   string
	ctrl csi.ControllerClient
}

// TestFailoverKill9 is scenario 4 (and 6: both replicas run as a service
// account bound to exactly the rules a deployment grants): two controller
// replicas share one RDS and one cluster; two clients play
// external-attachers, publishing and unpublishing RWO volumes through
// either replica at random while the leader is killed with SIGKILL. No RWO volume is
// ever published to two nodes, the survivor keeps answering and takes the
// Lease within the lease duration, and its first scrape afterwards counts
// exactly the attachments left.
func TestFailoverKill9(t *testing.T) {
	api := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	admin, err := kubernetes.NewForConfig(api.Config())
	if err != nil {
		t.Fatal(err)
	}
	grantController(t, ctx, admin)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := api.WriteKubeconfig(kubeconfig, controllerUser, controllerGroups...); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		createNode(t, ctx, admin, fmt.Sprintf("n%d", i))
	}

	rds, err := rdstest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rds.Close() })
	key, _ := writeKey(t, t.TempDir())
	rds.AuthorizeKey(readSigner(t, key).PublicKey())
	hostLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rds.HostKey())))

	const lease, retry = 4 * time.Second, 500 * time.Millisecond
	start := func(id string) *replica {
		dir := t.TempDir()
		s := startServing(t, []string{"RDS_CSI_RDS_KEY_FILE=" + key},
			"--mode", "controller", "--node-id", "n1", "--log-format", "json",
			"--endpoint", "unix://"+filepath.Join(dir, "csi.sock"),
			"--rds-address", rds.Addr(), "--rds-host-key", hostLine, "--volume-path", "/"+rdstest.DefaultPool+"/k8s",
			"--metrics-address", "127.0.0.1:0",
			"--cluster", "on", "--kubeconfig", kubeconfig,
			"--leader-election", "--leader-election-namespace", "kube-system", "--leader-election-identity", id,
			"--leader-election-lease-duration", lease.String(), "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", retry.String())
		return &replica{serving: s, id: id, ctrl: csi.NewControllerClient(s.conn)}
	}
	reps := []*replica{start("a"), start("b")}

	// Six RWO volumes, created through the first replica, with the PVs
	// the provisioner would have made.
	const nvol = 6
	vols := make([]*csi.Volume, nvol)
	pvOf := map[string]string{}
	for i := range vols {
		vols[i] = createVolume(t, reps[0].ctrl, fmt.Sprintf("fo-%d", i))
		name := fmt.Sprintf("pv-fo-%d", i)
		pvOf[vols[i].GetVolumeId()] = name
		createPV(t, ctx, admin, name, vols[i], false)
	}

	// Which replica leads: the one that logs it.
	leader := -1
	for deadline := time.Now().Add(2 * lease); leader < 0; time.Sleep(50 * time.Millisecond) {
		for i, r := range reps {
			if strings.Contains(r.stderr(), `"msg":"kube: leading"`) {
				leader = i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica leads")
		}
	}
	survivor := reps[1-leader]

	var (
		h        = &holders{on: map[string]string{}}
		mu       sync.Mutex
		dead     = -1 // the killed replica, once killed
		ops      int
		okAfter  int // successful publishes through the survivor after the kill
		killedAt time.Time
	)
	pick := func(prefer int) (*replica, int) {
		mu.Lock()
		defer mu.Unlock()
		if prefer == dead {
			prefer = 1 - prefer
		}
		return reps[prefer], prefer
	}
	// call runs one RPC through the preferred replica, moving to the other
	// when the preferred one is dead, and retries what the attacher
	// retries: Unavailable (a VolumeAttachment on its way to the replica,
	// a replica just killed) and Aborted (another call on the volume in
	// flight).
	call := func(prefer int, f func(csi.ControllerClient) error) (int, error) {
		for deadline := time.Now().Add(30 * time.Second); ; {
			r, i := pick(prefer)
			err := f(r.ctrl)
			if code := status.Code(err); code != codes.Unavailable && code != codes.Aborted || time.Now().After(deadline) {
				return i, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	finalizer := []string{"external-attacher/" + strings.ReplaceAll(rdscsi.DefaultDriverName, ".", "-")}
	var wg sync.WaitGroup
	client := func(c int) {
		rng := rand.New(rand.NewPCG(uint64(c), 42))
		nodes := []string{fmt.Sprintf("n%d", 2*c+1), fmt.Sprintf("n%d", 2*c+2)}
		for range 100 {
			vol := vols[rng.IntN(nvol)]
			node := nodes[rng.IntN(2)]
			vid := vol.GetVolumeId()
			name := fmt.Sprintf("csi-%s-%s", pvOf[vid], node)
			va, err := admin.StorageV1().VolumeAttachments().Create(ctx, &storagev1.VolumeAttachment{
				ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizer},
				Spec: storagev1.VolumeAttachmentSpec{Attacher: rdscsi.DefaultDriverName, NodeName: node,
					Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: new(pvOf[vid])}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Errorf("client %d: create %s: %v", c, name, err)
				return
			}
			via, err := call(rng.IntN(2), func(ctrl csi.ControllerClient) error {
				_, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
					VolumeId: vid, NodeId: node, VolumeCapability: mountCapability(), VolumeContext: vol.GetVolumeContext()})
				return err
			})
			switch status.Code(err) {
			case codes.OK:
				h.hold(vid, node)
				mu.Lock()
				ops++
				if dead >= 0 && via != dead {
					okAfter++
				}
				mu.Unlock()
				va.Status.Attached = true
				if va, err = admin.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
					t.Errorf("client %d: mark %s attached: %v", c, name, err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond) // in use
			case codes.FailedPrecondition: // held by another node
			default:
				t.Errorf("client %d: publish %s to %s: %v", c, vid, node, err)
				return
			}
			// Detach as the attacher does: delete, unpublish, drop the
			// finalizer.
			if err := admin.StorageV1().VolumeAttachments().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Errorf("client %d: delete %s: %v", c, name, err)
				return
			}
			h.release(vid, node)
			if _, err := call(rng.IntN(2), func(ctrl csi.ControllerClient) error {
				_, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vid, NodeId: node})
				return err
			}); err != nil {
				t.Errorf("client %d: unpublish %s from %s: %v", c, vid, node, err)
				return
			}
			if err := dropFinalizers(ctx, admin, name); err != nil {
				t.Errorf("client %d: %v", c, err)
				return
			}
		}
	}
	for c := range 2 {
		wg.Go(func() { client(c) })
	}
	// Kill the leader about half way through the publishes.
	for {
		mu.Lock()
		n := ops
		mu.Unlock()
		if n >= 60 || t.Failed() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	reps[leader].signal(syscall.SIGKILL)
	dead, killedAt = leader, time.Now()
	mu.Unlock()
	// The survivor answered all along; it leads (Events, metrics) once the
	// Lease has expired: the lease duration after it last saw the Lease
	// change, which is up to one jittered retry period (client-go waits
	// between retry and 2.2 retry periods) after the leader's last
	// renewal, plus up to one more such period before it tries again.
	// The bound allows a third for a loaded machine; when it logged
	// leading comes from its own log, not from when this test read it.
	rec := survivor.waitLog("kube: leading", 3*lease)
	ts, _ := rec["time"].(string)
	ledAt, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("time of the leading record %q: %v", ts, err)
	}
	if took, bound := ledAt.Sub(killedAt), lease+3*time.Duration(2.2*float64(retry)); took > bound {
		t.Errorf("the survivor led %v after the kill, more than %v", took, bound)
	} else {
		t.Logf("the survivor led %v after the kill (bound %v)", took, bound)
	}
	wg.Wait()
	if len(h.violations) > 0 {
		t.Fatalf("RWO volumes published to two nodes: %v", h.violations)
	}
	if okAfter == 0 {
		t.Error("no publish succeeded through the survivor after the kill")
	}
	t.Logf("%d publishes, %d through the survivor after the kill", ops, okAfter)

	// Leave two volumes attached and check the survivor's first scrape.
	for i, node := range []string{"n1", "n3"} {
		vid := vols[i].GetVolumeId()
		name := fmt.Sprintf("csi-%s-%s", pvOf[vid], node)
		if _, err := admin.StorageV1().VolumeAttachments().Create(ctx, &storagev1.VolumeAttachment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: storagev1.VolumeAttachmentSpec{Attacher: rdscsi.DefaultDriverName, NodeName: node,
				Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: new(pvOf[vid])}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := call(1-leader, func(ctrl csi.ControllerClient) error {
			_, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: vid, NodeId: node, VolumeCapability: mountCapability(), VolumeContext: vols[i].GetVolumeContext()})
			return err
		}); err != nil {
			t.Fatalf("final publish of %s to %s: %v", vid, node, err)
		}
	}
	checkGauges(t, "the survivor's scrape", gauges(t, survivor.metricsURL, activeGauge, nodeAttachmentsGauge),
		map[string]float64{activeGauge: 2, nodeAttachmentsGauge: 2})
	for vol, nodes := range publishedNodes(t, survivor.ctrl) {
		if len(nodes) > 1 {
			t.Errorf("volume %s published to %v", vol, nodes)
		}
	}
	checkClusterLogs(t, survivor.proc)
}

// dropFinalizers removes the VolumeAttachment's finalizers, as the
// attacher does once the volume is unpublished, and so lets it go.
func dropFinalizers(ctx context.Context, cs kubernetes.Interface, name string) error {
	for {
		va, err := cs.StorageV1().VolumeAttachments().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get %s: %w", name, err)
		}
		va.Finalizers = nil
		_, err = cs.StorageV1().VolumeAttachments().Update(ctx, va, metav1.UpdateOptions{})
		if err == nil || !apierrors.IsConflict(err) {
			return err
		}
	}
}
