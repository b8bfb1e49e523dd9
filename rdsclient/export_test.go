package rdsclient

import "context"

// ReplaceConnection dials a new connection and installs it while the
// current one is still up, as a re-dial does when the watcher of a
// dropped connection has not run yet. closeOld then ends the old
// connection, so that its watcher runs after the replacement's "up".
func (c *Client) ReplaceConnection(ctx context.Context) (closeOld func(), err error) {
	cn, err := c.dialOnce(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	old := c.conn
	c.installLocked(cn)
	c.mu.Unlock()
	return func() { _ = old.client.Close() }, nil
}

// QueuedReads is the number of reads waiting for a print.
func (c *Client) QueuedReads() int {
	if c.reads == nil {
		return 0
	}
	c.reads.mu.Lock()
	defer c.reads.mu.Unlock()
	return len(c.reads.queued)
}
