package rdsclient

import (
	"context"
	"time"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// Capacity returns the size and free space of the pool mounted at pool
// ("storage-pool"), or an error wrapping ErrNotFound.
func (c *Client) Capacity(ctx context.Context, pool string) (Capacity, error) {
	if _, err := quoted("pool", pool, routeros.ValidPool); err != nil {
		return Capacity{}, err
	}
	if err := c.enter("disk print"); err != nil {
		return Capacity{}, err
	}
	defer c.leave()
	e, err := c.readDisks(ctx, "mount-point", pool)
	if err != nil {
		return Capacity{}, err
	}
	total, err := numberField(e, "size")
	if err != nil {
		return Capacity{}, unexpectedf("pool %q: %w", pool, err)
	}
	free, err := numberField(e, "free")
	if err != nil {
		return Capacity{}, unexpectedf("pool %q: %w", pool, err)
	}
	return Capacity{Pool: pool, TotalBytes: total, FreeBytes: free}, nil
}

func numberField(e routeros.Entry, key string) (int64, error) {
	v, ok := e.Get(key)
	if !ok {
		return 0, unexpectedf("no %s field", key)
	}
	return routeros.ParseNumber(v)
}

// DiskStats returns one /disk monitor-traffic snapshot of a disk.
func (c *Client) DiskStats(ctx context.Context, slot string) (DiskStats, error) {
	q, err := quoteSlot("slot", slot)
	if err != nil {
		return DiskStats{}, err
	}
	if err := c.enter("disk monitor-traffic"); err != nil {
		return DiskStats{}, err
	}
	defer c.leave()
	line := "/disk monitor-traffic " + q + " once"
	out, err := c.run(ctx, "disk monitor-traffic", line, false)
	if err != nil {
		return DiskStats{}, err
	}
	kv, err := routeros.ParseKV(out)
	if err != nil {
		return DiskStats{}, unexpectedf("%s: %w", line, err)
	}
	if len(kv) == 0 {
		// A missing disk is answered with "no such item"; silence proves
		// nothing.
		return DiskStats{}, unexpectedf("%s: no output", line)
	}
	st := DiskStats{Slot: slot}
	if s, ok := kv["slot"]; ok && s != slot {
		return DiskStats{}, unexpectedf("%s: answered for slot %q", line, s)
	}
	p := kvParser{kv: kv}
	st.ReadOps = p.number("read-ops")
	st.ReadBytes = p.number("read-bytes")
	st.ReadRateBits = p.rate("read-rate")
	st.ReadTime = p.duration("read-time")
	st.WriteOps = p.number("write-ops")
	st.WriteBytes = p.number("write-bytes")
	st.WriteRateBits = p.rate("write-rate")
	st.WriteTime = p.duration("write-time")
	st.InFlightOps = p.number("in-flight-ops")
	if p.err != nil {
		return DiskStats{}, unexpectedf("%s: %w", line, p.err)
	}
	return st, nil
}

// kvParser reads required fields of a key: value listing, keeping the
// first error.
type kvParser struct {
	kv  map[string]string
	err error
}

func (p *kvParser) get(key string) (string, bool) {
	if p.err != nil {
		return "", false
	}
	v, ok := p.kv[key]
	if !ok {
		p.err = unexpectedf("no %s field", key)
	}
	return v, ok
}

func (p *kvParser) number(key string) int64 {
	v, ok := p.get(key)
	if !ok {
		return 0
	}
	n, err := routeros.ParseNumber(v)
	if err != nil {
		p.err = err
	}
	return n
}

func (p *kvParser) rate(key string) int64 {
	v, ok := p.get(key)
	if !ok {
		return 0
	}
	n, err := routeros.ParseRate(v)
	if err != nil {
		p.err = err
	}
	return n
}

func (p *kvParser) duration(key string) time.Duration {
	v, ok := p.get(key)
	if !ok {
		return 0
	}
	d, err := routeros.ParseDuration(v)
	if err != nil {
		p.err = err
	}
	return d
}

// Ping proves that the RDS answers commands. RouterOS ignores SSH
// keepalive requests, so Ping runs a cheap read.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Identity(ctx)
	return err
}

// Identity returns the RDS system identity (its name).
func (c *Client) Identity(ctx context.Context) (string, error) {
	if err := c.enter("system identity print"); err != nil {
		return "", err
	}
	defer c.leave()
	const line = "/system identity print"
	out, err := c.run(ctx, "system identity print", line, false)
	if err != nil {
		return "", err
	}
	kv, err := routeros.ParseKV(out)
	if err != nil {
		return "", unexpectedf("%s: %w", line, err)
	}
	name, ok := kv["name"]
	if !ok {
		return "", unexpectedf("%s: no name field", line)
	}
	return name, nil
}
