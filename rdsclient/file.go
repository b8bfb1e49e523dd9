package rdsclient

import (
	"context"
	"errors"
	"strings"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// Files lists the /file entries whose name starts with dirPrefix
// ("storage-pool/k8s" or "/storage-pool/k8s"), the directory itself
// included.
func (c *Client) Files(ctx context.Context, dirPrefix string) ([]File, error) {
	prefix, err := dirPrefixName(dirPrefix)
	if err != nil {
		return nil, err
	}
	q, err := routeros.Quote("^" + prefix)
	if err != nil {
		return nil, invalidf("directory prefix: %w", err)
	}
	// "." in the prefix is a regexp wildcard on the device: filter
	// exactly here.
	return c.files(ctx, "/file print detail where name~"+q, func(name string) bool {
		return strings.HasPrefix(name, prefix)
	})
}

// FilesNamed lists the /file entries, in any directory of any pool, whose
// name contains word, which must be a valid slot: the files a caller may
// have named after a disk ("pvc-<uuid>"), wherever they are. It is one
// command however many directories there are.
func (c *Client) FilesNamed(ctx context.Context, word string) ([]File, error) {
	if err := routeros.ValidSlot(word); err != nil {
		return nil, invalidf("file name word: %w", err)
	}
	// A slot holds only [a-z0-9-], which a regexp matches literally.
	q, err := routeros.Quote(word)
	if err != nil {
		return nil, invalidf("file name word: %w", err)
	}
	return c.files(ctx, "/file print detail where name~"+q, func(name string) bool {
		return strings.Contains(name, word)
	})
}

// files runs a /file print line and parses the entries keep accepts.
func (c *Client) files(ctx context.Context, line string, keep func(name string) bool) ([]File, error) {
	if err := c.enter("file print"); err != nil {
		return nil, err
	}
	defer c.leave()
	out, err := c.run(ctx, "file print", line, false)
	if err != nil {
		return nil, err
	}
	entries, err := routeros.ParseDetail(out, c.width)
	if err != nil {
		return nil, unexpectedf("%s: %w", line, err)
	}
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		name, ok := e.Get("name")
		if !ok {
			return nil, unexpectedf("file entry %d has no name", e.Index)
		}
		if !keep(name) {
			continue
		}
		f, err := c.parseFile(name, e)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

func (c *Client) parseFile(name string, e routeros.Entry) (File, error) {
	f := File{Name: name}
	f.Type, _ = e.Get("type")
	if s, ok := e.Get("size"); ok && s != "" {
		n, err := routeros.ParseHumanSize(s)
		if err != nil {
			if n, err = routeros.ParseNumber(s); err != nil {
				return File{}, unexpectedf("file %q size %q", name, s)
			}
		}
		f.SizeBytes = n
	}
	if s, ok := e.Get("last-modified"); ok && s != "" {
		t, err := routeros.ParseTime(s, c.opts.location)
		if err != nil {
			return File{}, unexpectedf("file %q last-modified: %w", name, err)
		}
		f.LastModified = t
	}
	return f, nil
}

// RemoveFile removes one file inside a pool, given with or without its
// leading slash ("/storage-pool/k8s/x.img"). A file that does not exist
// is not an error.
func (c *Client) RemoveFile(ctx context.Context, path string) error {
	name, err := fileName(path)
	if err != nil {
		return err
	}
	if err := c.enter("file remove"); err != nil {
		return err
	}
	defer c.leave()
	return c.removeFile(ctx, name)
}

// removeFile removes the file with this /file name (already validated).
func (c *Client) removeFile(ctx context.Context, name string) error {
	q, err := quoted("file name", name, routeros.ValidFileName)
	if err != nil {
		return err
	}
	line := "/file remove [find name=" + q + "]"
	for try := 0; ; try++ {
		_, err := c.run(ctx, "file remove", line, true)
		if err == nil || errors.Is(err, ErrNotFound) {
			return nil
		}
		if !outcomeUnknown(err) {
			return err
		}
		exists, rerr := c.fileExists(ctx, q, name)
		switch {
		case rerr != nil:
			return rerr
		case !exists:
			return nil
		case try > 0:
			return err
		}
	}
}

func (c *Client) fileExists(ctx context.Context, quotedName, name string) (bool, error) {
	line := "/file print detail where name=" + quotedName
	out, err := c.run(ctx, "file print", line, false)
	if err != nil {
		return false, err
	}
	entries, err := routeros.ParseDetail(out, c.width)
	if err != nil {
		return false, unexpectedf("%s: %w", line, err)
	}
	for _, e := range entries {
		if n, _ := e.Get("name"); n == name {
			return true, nil
		}
	}
	return false, nil
}
