package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection configures the coordination.k8s.io Lease through which
// replicas of the controller elect the one that posts Events, counts
// attachment events and reports the attachment gauges. Every replica
// answers RPCs either way (see Cluster). The durations follow the CSI
// sidecars' flags and defaults.
type LeaderElection struct {
	// Namespace and Name locate the Lease; Identity names this replica
	// (the pod name). All are required.
	Namespace, Name, Identity string
	// LeaseDuration is how long the other replicas wait after the
	// leader's last renewal before one takes over (default 15s).
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before
	// it steps down (default 10s); it must be shorter than LeaseDuration
	// and longer than 1.2 RetryPeriods.
	RenewDeadline time.Duration
	// RetryPeriod is how often each replica tries to acquire or renew
	// (default 5s).
	RetryPeriod time.Duration
}

// WithLeaderElection makes the replicas elect a leader through a Lease.
// Without it the Cluster always leads, which is right for one replica.
func WithLeaderElection(le LeaderElection) Option {
	return func(o *options) { o.election = &le }
}

func (le *LeaderElection) check() error {
	if le.LeaseDuration == 0 {
		le.LeaseDuration = 15 * time.Second
	}
	if le.RenewDeadline == 0 {
		le.RenewDeadline = 10 * time.Second
	}
	if le.RetryPeriod == 0 {
		le.RetryPeriod = 5 * time.Second
	}
	switch {
	case le.Namespace == "" || le.Name == "" || le.Identity == "":
		return errors.New("kube: leader election needs a namespace, a lease name and an identity")
	case le.RetryPeriod <= 0 || le.LeaseDuration <= le.RenewDeadline ||
		le.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(le.RetryPeriod)):
		return fmt.Errorf("kube: leader election needs 0 < %v × retry period < renew deadline < lease duration", leaderelection.JitterFactor)
	}
	return nil
}

// observingLock is a LeaseLock that remembers the last record it read
// that another replica held (or released): when this replica takes over,
// that record's renewal time is when a leader last reported timeouts.
type observingLock struct {
	*resourcelock.LeaseLock
	mu   sync.Mutex
	last time.Time
}

func (l *observingLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.LeaseLock.Get(ctx)
	if err == nil && rec.HolderIdentity != l.Identity() {
		l.mu.Lock()
		l.last = rec.RenewTime.Time
		l.mu.Unlock()
	}
	return rec, raw, err
}

func (l *observingLock) previousRenewal() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// elect campaigns for the Lease until ctx ends, leading whenever it holds
// it, and campaigns again after losing it.
func (c *Cluster) elect(ctx context.Context) {
	le := c.opts.election
	lock := &observingLock{LeaseLock: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     c.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}}
	for ctx.Err() == nil {
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   le.LeaseDuration,
			RenewDeadline:   le.RenewDeadline,
			RetryPeriod:     le.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            le.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					c.leading.Store(true)
					since := lock.previousRenewal()
					n := c.m.ReportTimedOut(since)
					c.opts.logger.Info("kube: leading", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity,
						"previous_renewal", since, "timeouts_reported", n)
				},
				OnStoppedLeading: func() {
					if c.leading.Swap(false) {
						c.opts.logger.Warn("kube: stopped leading", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
					}
				},
			},
		})
		if err != nil { // NewCluster checked what NewLeaderElector checks
			panic(fmt.Sprintf("kube: leader election: %v", err))
		}
		elector.Run(ctx)
	}
}
