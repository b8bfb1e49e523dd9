// Package durable writes files so that they survive a crash: a file's
// data is synced before it takes its name, and a name is synced into its
// directory before it is relied on. It is internal: not part of the
// public API.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir makes the entries of directory dir durable: a file created,
// renamed or removed in it is not durable until its directory is synced.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("durable: syncing directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("durable: syncing directory %s: %w", dir, err)
	}
	return nil
}

// WriteFile replaces the file name with data, atomically and durably:
// it writes a temporary file beside it, syncs it, renames it over name
// and syncs the directory. A crash leaves either the old or the new
// content at name, never a mix; at worst a stray temporary file, named
// ".<base>.*.tmp", is left beside it. The file gets mode perm (before the
// umask).
func WriteFile(name string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("durable: writing %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("durable: writing %s: %w", name, err)
	}
	return SyncDir(dir)
}

// MkdirAll creates directory dir and any missing parents, like
// os.MkdirAll, and makes each directory it creates durable by syncing
// the directory that holds it: without that, a power cut can take a new
// directory away with everything written into it since. An existing dir
// is left as it is.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("durable: %s exists and is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if fi, serr := os.Stat(dir); serr == nil && fi.IsDir() {
			// Created meanwhile by someone else, who syncs it.
			return nil
		}
		return fmt.Errorf("durable: creating %s: %w", dir, err)
	}
	return SyncDir(parent)
}
